"""Inspect, verify, roll back and benchmark a learner state directory.

Usage::

    python -m cl_core_ros.tools.state_cli [--state-dir DIR] list [--json]
    python -m cl_core_ros.tools.state_cli [--state-dir DIR] show N
    python -m cl_core_ros.tools.state_cli [--state-dir DIR] rollback N
    python -m cl_core_ros.tools.state_cli [--state-dir DIR] verify
    python -m cl_core_ros.tools.state_cli bench --state-dir DIR [--repeats 5] [--classes 50]
    python -m cl_core_ros.tools.state_cli [--state-dir DIR] export [LABEL ...] --out PACK_DIR
    python -m cl_core_ros.tools.state_cli [--state-dir DIR] import PACK_DIR [--on-clash POLICY]

``--state-dir`` defaults to ``$ROS_HOME/cl_core_ros/state`` (``~/.ros/cl_core_ros/state``) and
may be given before or after the command. ``N`` is a version number (``42`` or ``v000042``).
Exit status: 0 on success, 1 when the command found problems (``verify``) or failed, 2 on usage
errors. The tool accepts versions of any model (it has no model signature of its own).

``export`` writes a lesson pack of the given classes (all when none are named) of the current
version; ``import`` verifies a pack, takes it in by the rules of a lesson (see
:meth:`cl_core_ros.core.learner.Learner.import_pack`) and stores the result as a new version
(``rollback`` undoes it). Both load the backbone the state was made with (``--mobilenet-weights``
for mobilenet_v1); an empty state directory takes the pack's backbone. Run them while no
learner node uses the directory: a running learner's next change would replace the version the
tool stored (on a running robot, call ``~/export_classes`` / ``~/import_classes`` instead).
"""

import argparse
from collections.abc import Sequence
import json
import logging
from pathlib import Path
import shutil
import socket
import statistics
import sys
import tempfile
import time
from typing import Any

import torch

from cl_core_ros.core.config import LearnerConfig
from cl_core_ros.core.lesson_pack import read_pack, write_pack
from cl_core_ros.core.state_codec import dump_state
from cl_core_ros.core.state_store import (
    default_state_dir,
    parse_version_name,
    StateStore,
    StateStoreError,
    VersionInfo,
)


def _version_arg(text: str) -> int:
    number = parse_version_name(text) if text.startswith('v') else None
    if number is None and text.isdigit():
        number = int(text)
    if number is None:
        raise argparse.ArgumentTypeError(f'not a version number: {text!r}')
    return number


def _summary(info: VersionInfo) -> dict[str, Any]:
    return {
        'version': info.version, 'name': info.name, 'current': info.current,
        'created_utc': info.created_utc, 'change': info.change, 'classes': list(info.classes),
        'size_bytes': info.size_bytes, 'valid': info.valid, 'problem': info.problem,
        'model_signature': info.model_signature,
    }


def _describe(value: Any, path: str, rows: list[tuple[str, str]], limit: int = 300) -> None:
    if len(rows) >= limit:
        return
    if isinstance(value, torch.Tensor):
        rows.append((path, f'tensor {str(value.dtype).removeprefix("torch.")} '
                           f'{list(value.shape)}'))
    elif isinstance(value, dict):
        for key, item in value.items():
            _describe(item, f'{path}.{key}' if isinstance(key, str) else f'{path}[{key}]', rows)
        if not value:
            rows.append((path, '{}'))
    elif isinstance(value, (list, tuple)) and any(
            isinstance(item, (dict, list, tuple, torch.Tensor)) for item in value):
        for index, item in enumerate(value):
            _describe(item, f'{path}[{index}]', rows)
    else:
        text = repr(value)
        rows.append((path, text if len(text) <= 100 else text[:97] + '...'))


def _cmd_list(store: StateStore, args: argparse.Namespace) -> int:
    versions = store.list_versions()
    if args.json:
        print(json.dumps([_summary(info) for info in versions], indent=2))
        return 0
    if not versions:
        print(f'no versions in {store.root}')
        return 0
    print(f'{"":1} {"version":8} {"created (UTC)":24} {"status":8} {"classes":>7} '
          f'{"bytes":>11}  change')
    for info in versions:
        status = 'ok' if info.valid else 'INVALID'
        print(f'{"*" if info.current else "":1} {info.name:8} {info.created_utc:24} {status:8} '
              f'{len(info.classes):7d} {info.size_bytes:11d}  {info.change}')
        if info.classes:
            names = ', '.join(info.classes)
            print(f'{"":11}classes: {names if len(names) <= 120 else names[:117] + "..."}')
        if not info.valid:
            print(f'{"":11}problem: {info.problem}')
    return 0


def _cmd_show(store: StateStore, args: argparse.Namespace) -> int:
    state, info = store.load_version(args.version)
    print(json.dumps(_summary(info), indent=2))
    rows: list[tuple[str, str]] = []
    _describe(state, 'state', rows)
    width = min(60, max((len(path) for path, _ in rows), default=10))
    for path, description in rows:
        print(f'{path:{width}}  {description}')
    return 0


def _cmd_rollback(store: StateStore, args: argparse.Namespace) -> int:
    info = store.rollback(args.version)
    print(f'rolled back to v{args.version:06d}: new current version {info.name} '
          f'({len(info.classes)} classes)')
    return 0


def _cmd_verify(store: StateStore, args: argparse.Namespace) -> int:
    report = store.verify()
    for info in report.versions:
        mark = '*' if info.current else ' '
        print(f'{mark} {info.name}: {"ok" if info.valid else "INVALID: " + str(info.problem)}')
    for problem in report.problems:
        print(f'problem: {problem}')
    print(f'{len(report.versions)} version(s), current '
          f'{f"v{report.current:06d}" if report.current is not None else "none"}: '
          f'{"OK" if report.ok else f"{len(report.problems)} problem(s)"}')
    return 0 if report.ok else 1


def _learner_for(store: StateStore, signature: dict | None, args: argparse.Namespace):
    """Return a Teacher over a learner built like the one that made the stored state.

    Its model comes from the current version's signature (or ``signature`` when the directory
    holds none), its memory sizes and storage from the stored state.
    """
    from cl_core_ros.core.learner import Learner, signature_defaults
    from cl_core_ros.core.teacher import Teacher

    loaded = store.load_latest()
    state = loaded.state or {}
    if loaded.info is not None:
        signature = loaded.info.model_signature or {}
    if not signature:
        raise StateStoreError(f'{store.root} holds no learner state to export from')
    backbone = signature.get('backbone', 'efficientnet_lite0')
    signature = {**signature_defaults(backbone), **signature}  # fields it was made without
    values = {'backbone': backbone,
              'input_size': int(signature.get('input_size', 192)),
              'centre_sigma': float(signature['centre_sigma']),
              'surround_weight': float(signature['surround_weight']),
              'feature_layer': signature['feature_layer'],
              'deep_layer': signature.get('deep_layer'),
              'mobilenet_weights': args.mobilenet_weights}
    if state:
        values.update(fast_buffer_size=int(state['fast_replay']['capacity']),
                      deep_buffer_size=int(state['deep_replay']['capacity']),
                      deep_replay_policy=state['deep_replay']['policy'],
                      replay_dtype=state['replay_dtype'])
    learner = Learner(LearnerConfig(**values))
    teacher = Teacher(learner, StateStore(
        store.root, keep=args.keep, model_signature=learner.signature(),
        signature_defaults=learner.signature_defaults()))
    return teacher


def _cmd_export(store: StateStore, args: argparse.Namespace) -> int:
    teacher = _learner_for(store, None, args)
    out = teacher.export_classes(args.labels, args.origin)
    if not out.success:
        print(f'error: {out.message}', file=sys.stderr)
        return 1
    path, pack_id, size = write_pack(out.details['pack'], args.out)
    print(f'{out.message} to {path}: {size} bytes, pack_sha256 {pack_id}')
    return 0


def _cmd_import(store: StateStore, args: argparse.Namespace) -> int:
    pack, pack_id = read_pack(args.pack)
    teacher = _learner_for(store, pack.signature, args)
    out = teacher.import_pack(pack, pack_id, args.on_clash)
    print(out.message if out.success else f'error: {out.message}',
          file=sys.stdout if out.success else sys.stderr)
    if out.success:
        print(f'state version {teacher.status().state_version}')
    return 0 if out.success else 1


def make_benchmark_state(num_classes: int = 50, *, seed: int = 0) -> dict[str, Any]:
    """Build a realistic learner state: CWR* head, pool and deep replay, backbone upper part.

    Sizes: 1280x1000 fp32 head weights and 1000 counts, 500x1280 fp32 pool replay with labels,
    1500x112x8x8 uint8 deep replay with per-pattern scale/offset and labels, and about 14 MB of
    fp32 'upper' backbone weights (EfficientNet-Lite0-like block shapes, dotted keys).
    """
    generator = torch.Generator().manual_seed(seed)
    upper: dict[str, torch.Tensor] = {}
    floats, block = 0, 0
    while floats < 3_500_000:
        for name, shape in (('conv_pw.weight', (672, 112, 1, 1)),
                            ('conv_dw.weight', (672, 1, 5, 5)),
                            ('conv_pwl.weight', (192, 672, 1, 1)),
                            ('bn1.weight', (672,)), ('bn1.bias', (672,)),
                            ('bn1.running_mean', (672,)), ('bn1.running_var', (672,))):
            tensor = torch.randn(shape, generator=generator)
            upper[f'blocks.{block}.{name}'] = tensor
            floats += tensor.numel()
        block += 1
    return {
        'format': 'cl_core_ros.learner/benchmark',
        'head': {
            'weight': torch.randn(1000, 1280, generator=generator),
            'bias': torch.zeros(1000),
            'past_counts': torch.randint(0, 500, (1000,), generator=generator).float(),
        },
        'replay_pool': {
            'activations': torch.randn(500, 1280, generator=generator),
            'labels': torch.randint(0, num_classes, (500,), generator=generator),
        },
        'replay_deep': {
            'codes': torch.randint(0, 256, (1500, 112, 8, 8), generator=generator,
                                   dtype=torch.uint8),
            'scale': torch.rand(1500, generator=generator),
            'offset': torch.randn(1500, generator=generator),
            'labels': torch.randint(0, num_classes, (1500,), generator=generator),
        },
        'upper': upper,
        'labels': {'names': [f'object_{i:03d}' for i in range(num_classes)],
                   'ids': list(range(num_classes))},
        'meta': {'experiences': num_classes, 'learning_rate': 0.001, 'seed': seed},
    }


def _cmd_bench(store: StateStore, args: argparse.Namespace) -> int:
    # Benchmark in a fresh directory inside --state-dir: the filesystem under test is the
    # real one, but no real history is touched.
    bench_dir = tempfile.mkdtemp(prefix='state-bench-', dir=store.root)
    try:
        bench = StateStore(bench_dir, keep=args.repeats + 1,
                           model_signature={'backbone': 'benchmark', 'input_size': 128})
        state = make_benchmark_state(args.classes)
        classes = state['labels']['names']
        encode_times, commit_times, sizes = [], [], []
        for repeat in range(args.repeats):
            started = time.perf_counter()
            dump_state(state)
            encode_times.append(time.perf_counter() - started)
            started = time.perf_counter()
            info = bench.commit(state, change=f'bench {repeat}', classes=classes)
            commit_times.append(time.perf_counter() - started)
            sizes.append(info.size_bytes)
        started = time.perf_counter()
        loaded = bench.load_latest()
        load_seconds = time.perf_counter() - started
        if not loaded.found:
            raise StateStoreError(f'benchmark state did not load back: {loaded.problems}')
    finally:
        if not args.keep:
            shutil.rmtree(bench_dir, ignore_errors=True)
    result = {
        'classes': args.classes, 'repeats': args.repeats,
        'bytes_per_version': statistics.median(sizes),
        'commit_seconds_median': statistics.median(commit_times),
        'commit_seconds_min': min(commit_times), 'commit_seconds_max': max(commit_times),
        'encode_seconds_median': statistics.median(encode_times),
        'load_latest_seconds': load_seconds,
        'directory': bench_dir if args.keep else None,
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f'state with {args.classes} classes: {result["bytes_per_version"] / 1e6:.2f} MB '
              f'per version')
        print(f'commit (encode + write + fsync + publish), {args.repeats} repeats: median '
              f'{result["commit_seconds_median"]:.3f} s (min {min(commit_times):.3f}, '
              f'max {max(commit_times):.3f}); encode alone median '
              f'{result["encode_seconds_median"]:.3f} s')
        print(f'load_latest (verify checksums + parse): {load_seconds:.3f} s')
    return 0


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the tool."""
    parser = argparse.ArgumentParser(
        prog='python -m cl_core_ros.tools.state_cli',
        description='Inspect, verify, roll back and benchmark a cl_core_ros state directory.')
    parser.add_argument('--state-dir', default=None,
                        help=f'state directory (default: {default_state_dir()})')
    parser.add_argument('-v', '--verbose', action='store_true', help='log at INFO level')
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument('--state-dir', default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    commands = parser.add_subparsers(dest='command', required=True)
    listing = commands.add_parser('list', parents=[common], help='list versions')
    listing.add_argument('--json', action='store_true', help='print JSON')
    show = commands.add_parser('show', parents=[common], help='show one version')
    show.add_argument('version', type=_version_arg)
    rollback = commands.add_parser('rollback', parents=[common],
                                   help='make an earlier version current (as a new version)')
    rollback.add_argument('version', type=_version_arg)
    commands.add_parser('verify', parents=[common], help='check every version; exit 1 on problems')
    bench = commands.add_parser('bench', parents=[common],
                                help='measure commit time and size of a 50-class state')
    bench.add_argument('--repeats', type=int, default=5, help='commits to time (default 5)')
    bench.add_argument('--classes', type=int, default=50, help='classes (default 50)')
    bench.add_argument('--json', action='store_true', help='print JSON')
    bench.add_argument('--keep', action='store_true', help='keep the benchmark directory')
    export = commands.add_parser('export', parents=[common],
                                 help='write a lesson pack of some classes (all by default)')
    export.add_argument('labels', nargs='*', help='classes to export (default: all)')
    export.add_argument('--out', required=True, help='directory to create for the pack')
    export.add_argument('--origin', default=f'/{socket.gethostname()}',
                        help='name of this robot in the pack (default: /<hostname>); use '
                             "the learner node's name, e.g. /robot_a/learner")
    imports = commands.add_parser('import', parents=[common],
                                  help='import a lesson pack as a new version')
    imports.add_argument('pack', help='pack directory')
    imports.add_argument('--on-clash', choices=('merge', 'rename', 'refuse'),
                         default='refuse', help='a label already taken here (default: refuse)')
    for sub in (export, imports):
        sub.add_argument('--mobilenet-weights', default=None,
                         help='weights file when the state is for mobilenet_v1')
        sub.add_argument('--keep', type=int, default=5, help='versions to keep (default 5)')
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the tool; return the exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.ERROR,
                        format='%(levelname)s %(name)s: %(message)s')
    handlers = {'list': _cmd_list, 'show': _cmd_show, 'rollback': _cmd_rollback,
                'verify': _cmd_verify, 'bench': _cmd_bench, 'export': _cmd_export,
                'import': _cmd_import}
    state_dir = Path(args.state_dir).expanduser() if args.state_dir else default_state_dir()
    if args.command not in ('bench', 'import') and not state_dir.is_dir():
        print(f'error: no state directory at {state_dir}', file=sys.stderr)
        return 1
    try:
        store = StateStore(state_dir)
        return handlers[args.command](store, args)
    except (StateStoreError, ValueError, OSError) as error:  # PackError is a ValueError
        print(f'error: {error}', file=sys.stderr)
        return 1


if __name__ == '__main__':
    sys.exit(main())
