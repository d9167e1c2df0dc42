"""The ``conceptlens`` command line: demo model, analysis of one image, the dashboard.

conceptlens demo-model [--out data/demo]
conceptlens analyze --model M --image X [--grid 4x4] [--baseline mean] ...
conceptlens demo      (writes the demo model if needed, then analyses a sample)
conceptlens serve     (the dashboard; needs the service, see below)
conceptlens gc        (the service's unreferenced blobs)

The first three are the library's own. ``serve`` and ``gc`` run the service (``backend/``,
``worker/``), which is not part of the installed ``conceptlens`` distribution: it runs from
a ConceptLens checkout (``./dev.sh start``, or ``python -m conceptlens.cli serve`` in its
root) or the Docker image, and these two commands say so when it cannot be imported.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

DEMO_DIR = Path("data/demo")


def main(argv: Sequence[str] | None = None) -> int:
    return _dispatch(build_parser().parse_args(argv))


def run() -> None:
    """The ``conceptlens`` console script: :func:`main`, then, after the compute commands
    (``analyze``, ``demo``, ``demo-model``), leave without the interpreter's teardown.

    Finalising the modules of an interpreter that imported torch takes about 0.4 s (2 s to
    import torch, 2.4 s for ``python -c "import torch"``; bench/README.md, "Whole
    processes"), which these commands would spend after their work is done: their files are
    written and closed when :func:`main` returns, so the process flushes its streams and
    logging and exits at once. ``serve`` and ``gc`` (child processes, database
    connections) exit normally.
    """
    args = build_parser().parse_args()
    code = _dispatch(args)
    if getattr(args, "skip_teardown", False):
        logging.shutdown()
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):  # a reader gone (`| head`), closed
                stream.flush()
        os._exit(code)
    raise SystemExit(code)


def _dispatch(args: argparse.Namespace) -> int:
    try:
        return int(args.func(args))
    except (ValueError, FileNotFoundError, MemoryError) as exc:
        print(f"conceptlens: error: {exc}", file=sys.stderr)
        return 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="conceptlens",
        description="Which interaction concepts does a network encode? Exact Harsanyi "
        "interactions, multi-order interactions and sparsity of one input.",
    )
    sub = parser.add_subparsers(required=True, metavar="command")

    demo_model = sub.add_parser(
        "demo-model", help="train the demo digits CNN and write it in every format"
    )
    demo_model.add_argument(
        "--out", type=Path, default=DEMO_DIR, help="folder (default: data/demo)"
    )
    demo_model.add_argument("--seed", type=int, default=0)
    demo_model.set_defaults(func=cmd_demo_model, skip_teardown=True)

    analyze = sub.add_parser("analyze", help="analyse one image with one model")
    analyze.add_argument(
        "--model", type=Path, required=True, help="ONNX, TorchScript, safetensors or .pt state_dict"
    )
    analyze.add_argument("--image", type=Path, required=True, help="PNG or JPEG")
    _analysis_options(analyze)
    analyze.set_defaults(func=cmd_analyze, skip_teardown=True)

    serve = sub.add_parser("serve", help="run the dashboard and API (embedded worker by default)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.set_defaults(func=cmd_serve)

    gc = sub.add_parser(
        "gc", help="delete stored blobs (files) that no model, image or result references"
    )
    gc.add_argument(
        "--min-age-hours",
        type=float,
        default=1.0,
        help="spare blobs written more recently than this (default 1; jobs may be mid-write)",
    )
    gc.add_argument("--dry-run", action="store_true", help="only report what would go")
    gc.set_defaults(func=cmd_gc)

    demo = sub.add_parser("demo", help="write the demo model if needed and analyse a sample digit")
    demo.add_argument("--sample", type=int, default=0, help="which sample image (default 0)")
    _analysis_options(demo)
    demo.set_defaults(func=cmd_demo, skip_teardown=True)
    return parser


def _analysis_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--grid", default="4x4", help="patch grid rows x cols (default 4x4)")
    p.add_argument("--players", help="comma-separated cells used as players (default: all)")
    p.add_argument(
        "--others", choices=("present", "absent"), default="present", help="non-player cells"
    )
    p.add_argument(
        "--baseline", default="mean", help="zero, mean, blur, or an image file (default mean)"
    )
    p.add_argument("--target", default="predicted", help="'predicted' or a class index")
    p.add_argument(
        "--output", default="log-odds", choices=("log-odds", "logit", "prob", "log-prob")
    )
    p.add_argument(
        "--tau", type=float, default=0.05, help="salient threshold on normalised |I| (0.05)"
    )
    p.add_argument("--top-k", type=int, default=10, help="salient sets to list (10)")
    p.add_argument(
        "--and-or-steps", type=int, default=0, help="also learn AND-OR interactions (e.g. 10000)"
    )
    p.add_argument("--input-size", help="HxW when the model file does not record it")
    p.add_argument(
        "--channels", type=int, choices=(1, 3), help="when the model file does not record it"
    )
    p.add_argument("--mean", help="normalisation mean, one value or one per channel")
    p.add_argument("--std", help="normalisation std, one value or one per channel")
    p.add_argument(
        "--architecture", help="project architecture for a bare state_dict (e.g. digit_cnn)"
    )
    p.add_argument(
        "--batch-size", type=int, default=2048, help="forward-pass batch (halves on OOM)"
    )
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument(
        "--out", type=Path, default=None, help="result file (.npz, with a .json sidecar)"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def cmd_demo_model(args: argparse.Namespace) -> int:
    from conceptlens.memory import reuse_heap
    from conceptlens.models.demo import write_demo_model

    reuse_heap()

    t0 = time.perf_counter()
    info = write_demo_model(args.out, seed=args.seed)
    print(f"demo model written to {args.out} in {time.perf_counter() - t0:.1f} s")
    print(f"test accuracy {info['test_accuracy']:.3f}; files:")
    for path in sorted(Path(args.out).rglob("*")):
        if path.is_file():
            print(f"  {path}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """Migrate, then serve; with the memory:// broker a worker runs in a thread of this process."""
    _require_service()
    import uvicorn

    from backend.app import create_app
    from worker.service import lifecycle_hooks

    start, stop = lifecycle_hooks()
    print(f"ConceptLens on http://{args.host}:{args.port}  (API docs: /docs)", flush=True)
    uvicorn.run(create_app(on_startup=start, on_shutdown=stop), host=args.host, port=args.port)
    return 0


def _require_service() -> None:
    """Raise a sentence (not a traceback) when the service or its dependencies are missing."""
    import importlib.util

    for package in ("backend", "worker"):
        if importlib.util.find_spec(package) is None:
            raise ValueError(
                "`conceptlens serve` and `conceptlens gc` run the dashboard, which is not part "
                "of the installed library: run them in the root of a ConceptLens checkout "
                "(`./dev.sh start`, or `python -m conceptlens.cli serve` there) or use its "
                "Docker image"
            )
    missing = [
        m for m in ("fastapi", "sqlalchemy", "celery") if importlib.util.find_spec(m) is None
    ]
    if missing:
        raise ValueError(
            f"the dashboard needs {', '.join(missing)}: install the service's dependencies "
            'with `pip install -e ".[service]"` in the checkout'
        )


def cmd_gc(args: argparse.Namespace) -> int:
    """Collect unreferenced blobs of the configured database and blob store."""
    _require_service()
    from sqlalchemy.exc import DBAPIError

    from backend.config import get_settings
    from backend.db.session import session_scope
    from backend.gc import collect
    from backend.storage import LocalBlobStore

    store = LocalBlobStore(get_settings().blobs)
    try:
        with session_scope() as session:
            sweep = collect(
                session, store, min_age_s=args.min_age_hours * 3600, dry_run=args.dry_run
            )
    except DBAPIError as error:
        raise ValueError(
            f"cannot read the database {get_settings().db_url!r} ({error.orig}); is it "
            "migrated? (`conceptlens serve` migrates it on start)"
        ) from None
    verb = "would remove" if args.dry_run else "removed"
    count = len(sweep.unreferenced) if args.dry_run else len(sweep.removed)
    print(
        f"{sweep.stored} blobs stored, {sweep.referenced} referenced; {verb} {count} "
        f"unreferenced older than {args.min_age_hours:g} h"
        + ("" if args.dry_run else f" ({sweep.bytes_freed / 1e6:.1f} MB freed)")
    )
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from conceptlens.models.demo import write_demo_model

    if not (DEMO_DIR / "demo_model.json").exists():
        print(f"writing the demo model to {DEMO_DIR} ...")
        write_demo_model(DEMO_DIR)
    samples = sorted((DEMO_DIR / "samples").glob("*.png"))
    args.model = DEMO_DIR / "digit_cnn.onnx"
    args.image = samples[args.sample % len(samples)]
    args.out = args.out or Path("out/demo_result.npz")
    return cmd_analyze(args)


def cmd_analyze(args: argparse.Namespace) -> int:
    from conceptlens.memory import reuse_heap
    from conceptlens.pipeline import AnalysisRequest, run_analysis

    reuse_heap()  # each batch's tensors from the heap, not fresh pages (conceptlens.memory)

    request = AnalysisRequest(
        model=args.model,
        image=args.image,
        grid=args.grid,
        players=_int_list(args.players),
        others_present=args.others == "present",
        baseline=args.baseline,
        target=args.target if args.target == "predicted" else int(args.target),
        output=args.output,
        tau=args.tau,
        top_k=args.top_k,
        and_or_steps=args.and_or_steps,
        input_size=_size(args.input_size),
        channels=args.channels,
        mean=_float_list(args.mean),
        std=_float_list(args.std),
        architecture=args.architecture,
        batch_size=args.batch_size,
        device=args.device,
    )
    bar = None if args.quiet else _ProgressBar()
    result = run_analysis(request, progress=bar)
    if bar is not None:
        bar.close()
    print(format_summary(result.summary()))
    if args.out is not None:
        npz, sidecar = result.save(args.out)
        print(f"\nwrote {npz} and {sidecar}")
    return 0


class _ProgressBar:
    """tqdm over forward passes (created on the first report, when the total is known)."""

    def __init__(self) -> None:
        self._bar: Any = None

    def __call__(self, done: int, total: int) -> None:
        if self._bar is None:
            from tqdm import tqdm

            self._bar = tqdm(total=total, unit="pass", desc="forward passes", file=sys.stderr)
        self._bar.update(done - self._bar.n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def format_summary(s: dict[str, Any]) -> str:
    """The printed summary: prediction, v(N)−v(∅), residuals, top salient sets, J^(m)."""
    lines = [
        f"model       {s.get('model', '')}",
        f"image       {s.get('image', '')}",
        f"players     n = {s['n_players']} ({s.get('grid', '')} grid), "
        f"baseline {s.get('baseline', '')}",
        f"prediction  class {s['prediction']}" + _label(s, s["prediction"]),
        f"target      class {s['target']}{_label(s, s['target'])}, output {s['output']}",
        f"v(N) − v(∅) {s['v_full_minus_empty']:+.6g}   "
        f"(v(∅) = {s['v_empty']:.6g}, v(N) = {s['v_full']:.6g})",
        f"residual    max_S |v(S) − Σ_{{T⊆S}} I(T)| = {s['residual']:.3g}",
    ]
    if "and_or" in s:
        ao = s["and_or"]
        lines.append(
            f"AND-OR      residual {ao['residual']:.3g}, Σ|I| {ao['loss']:.4g} "
            f"(AND only {ao['loss_and_only']:.4g}), |q| ≤ {ao['q_max']:.3g}"
        )
    pos, neg = s["salient_positive"], s["salient_negative"]
    lines.append(
        f"salient     {sum(pos) + sum(neg)} of {2 ** s['n_players'] - 1} sets at τ = {s['tau']}"
    )
    lines.append("  order  " + " ".join(f"{k:>4d}" for k in range(len(pos))))
    lines.append("  +      " + " ".join(f"{c:>4d}" for c in pos))
    lines.append("  −      " + " ".join(f"{c:>4d}" for c in neg))
    lines.append("top salient sets (players, value, normalised strength):")
    # the k strongest sets may include some below τ, even of value 0: those are not salient
    salient_rows = [row for row in s["top_sets"] if row["value"] and row["strength"] >= s["tau"]]
    lines.extend([] if salient_rows else [f"  none: no set reaches τ = {s['tau']}"])
    for row in salient_rows:
        players = ", ".join(map(str, row["players"]))
        lines.append(f"  {{{players}}}  {row['value']:+.4g}  {row['strength']:.3f}")
    p = s.get("p")
    lines.append(
        "monotonicity ū(m) = E_{|S|=m}[v(S) − v(∅)]: "
        + " ".join(f"{u:.3g}" for u in s["u_bar"])
        + (f"; exponent p = {p:.3g}" if p is not None else "")
    )
    lines.append("order-strength curve (m/n, J^(m), theory F^(m)):")
    n = s["n_players"]
    for m, (j, f) in enumerate(zip(s["J"], s["F"], strict=True)):
        lines.append(f"  m={m:<3d} {m / n:5.2f}  {j:8.4f}  {f:8.4f}  {_bar(j)}")
    return "\n".join(lines)


def _label(s: dict[str, Any], cls: int) -> str:
    labels = s.get("labels")
    return f" ({labels[cls]})" if labels and cls < len(labels) else ""


def _bar(value: float, width: int = 30) -> str:
    return "█" * round(min(value, 3.0) / 3.0 * width)


def _int_list(text: str | None) -> list[int] | None:
    return None if not text else [int(t) for t in text.replace(" ", "").split(",") if t]


def _float_list(text: str | None) -> list[float] | None:
    return None if not text else [float(t) for t in text.replace(" ", "").split(",") if t]


def _size(text: str | None) -> tuple[int, int] | None:
    if not text:
        return None
    from conceptlens.players import parse_grid

    return parse_grid(text)


if __name__ == "__main__":  # pragma: no cover
    run()
