// The image with its patch grid on a canvas: draw, highlight patch sets, hit-test clicks.

/** Cell edges as the engine computes them: round(k * size / parts). */
export function edges(size, parts) {
  return Array.from({ length: parts + 1 }, (_, k) => Math.round((k * size) / parts));
}

const MOVES = { ArrowLeft: [0, -1], ArrowRight: [0, 1], ArrowUp: [-1, 0], ArrowDown: [1, 0] };

/**
 * Keyboard over a patch grid, shared by every canvas that shows one: the arrow keys move a
 * cursor cell, Space or Enter acts on it. Returns {cursor, activate} (and takes the key from
 * the page) or null for any other key.
 */
export function cursorKey(event, cursor, { rows, cols }) {
  const r = Math.floor(cursor / cols);
  const c = cursor % cols;
  let result = null;
  if (MOVES[event.key]) {
    const [dr, dc] = MOVES[event.key];
    const clampTo = (n, hi) => Math.min(Math.max(n, 0), hi);
    result = { cursor: clampTo(r + dr, rows - 1) * cols + clampTo(c + dc, cols - 1), activate: false };
  } else if (event.key === " " || event.key === "Enter") {
    result = { cursor, activate: true };
  }
  if (result) event.preventDefault();
  return result;
}

export class GridCanvas {
  /**
   * @param {HTMLCanvasElement} canvas
   * @param {{rows:number, cols:number, width:number, height:number}} grid  in model pixels
   */
  constructor(canvas, grid) {
    this.canvas = canvas;
    this.grid = grid;
    this.image = null;
    this.players = null; // null = every cell
    this.highlights = []; // [{cells:[…], color, label}]
    this.selected = [];
    this.cursor = null; // the keyboard's cell, outlined dashed
  }

  async load(src) {
    const img = new Image();
    img.src = src;
    await img.decode();
    this.image = img;
    this.draw();
  }

  setGrid(grid) {
    this.grid = grid;
    this.draw();
  }

  cellRect(cell) {
    const { rows, cols, width, height } = this.grid;
    const sx = this.canvas.width / width;
    const sy = this.canvas.height / height;
    const re = edges(height, rows);
    const ce = edges(width, cols);
    const r = Math.floor(cell / cols);
    const c = cell % cols;
    return [ce[c] * sx, re[r] * sy, (ce[c + 1] - ce[c]) * sx, (re[r + 1] - re[r]) * sy];
  }

  /** The cell under a mouse event, or null. */
  cellAt(event) {
    const rect = this.canvas.getBoundingClientRect();
    const x = ((event.clientX - rect.left) / rect.width) * this.grid.width;
    const y = ((event.clientY - rect.top) / rect.height) * this.grid.height;
    const { rows, cols, width, height } = this.grid;
    const re = edges(height, rows);
    const ce = edges(width, cols);
    const r = re.findIndex((e, i) => i < rows && y >= e && y < re[i + 1]);
    const c = ce.findIndex((e, i) => i < cols && x >= e && x < ce[i + 1]);
    return r < 0 || c < 0 ? null : r * cols + c;
  }

  draw() {
    const ctx = this.canvas.getContext("2d");
    const { width: W, height: H } = this.canvas;
    ctx.imageSmoothingEnabled = false;
    ctx.clearRect(0, 0, W, H);
    if (this.image) ctx.drawImage(this.image, 0, 0, W, H);
    const cells = this.grid.rows * this.grid.cols;
    if (this.players) {
      ctx.fillStyle = "rgba(20, 24, 40, 0.55)";
      for (let cell = 0; cell < cells; cell++) {
        if (!this.players.includes(cell)) ctx.fillRect(...this.cellRect(cell));
      }
    }
    for (const { cells: set, color } of this.highlights) {
      ctx.fillStyle = color;
      for (const cell of set) ctx.fillRect(...this.cellRect(cell));
    }
    ctx.strokeStyle = "rgba(255, 200, 0, 0.9)";
    ctx.lineWidth = Math.max(1, W / 300);
    for (let cell = 0; cell < cells; cell++) ctx.strokeRect(...this.cellRect(cell));
    ctx.strokeStyle = "#00e0ff";
    ctx.lineWidth = Math.max(2, W / 120);
    for (const cell of this.selected) ctx.strokeRect(...this.cellRect(cell));
    if (this.cursor !== null) {
      ctx.strokeStyle = "#ffffff";
      ctx.setLineDash([Math.max(3, W / 60), Math.max(2, W / 120)]);
      ctx.strokeRect(...this.cellRect(this.cursor));
      ctx.setLineDash([]);
    }
  }
}

export const POSITIVE = "rgba(214, 39, 40, 0.45)";
export const NEGATIVE = "rgba(31, 119, 180, 0.45)";
