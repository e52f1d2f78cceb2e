"""Size and cost of lesson packs: what sharing a taught class with another robot takes.

Usage::

    python -m cl_core_ros.tools.bench_packs [--classes 8] [--frames 100] [--consolidate]
        [--json out.json]

Robot A (a default learner) is taught ``--classes`` hard-stream objects, one real
``--frames``-frame lesson each (as the node gathers them). It then prints, per class, the
size of a one-class pack (manifest + tensors) and what it holds, the time to export and encode
a pack of every class, and the time robot B (a fresh learner) takes to verify, decode and
import it. With ``--consolidate`` A runs one deep consolidation (default settings) and the
sizes are measured again: the lessons' deep latents then sit in the deep replay memory instead
of the pending lessons. Times are medians of 3; they are wall times on whatever else the
machine runs.
"""

import argparse
import json
from pathlib import Path
import statistics
import sys
import time

from cl_core_ros.core.config import LearnerConfig
from cl_core_ros.core.heap import fix_heap_thresholds
from cl_core_ros.core.learner import Learner
from cl_core_ros.core.lesson_pack import decode
from cl_core_ros.data.scenes import make_stream, short_name


def _sizes(learner: Learner) -> list[dict]:
    rows = []
    for _, name in learner.labels.items():
        pack = learner.export_classes([name], origin='/robot_a/learner')
        manifest, tensors, _ = pack.encode()
        (entry,) = pack.classes
        rows.append({'class': name, 'bytes': len(manifest) + len(tensors),
                     'pool_vectors': int(entry.pool.shape[0]), 'deep_latents': len(entry.deep),
                     'pending_latents': len(entry.pending)})
    return rows


def _median_time(fn, repeats: int = 3) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def run(classes: int, frames: int, consolidate: bool) -> dict:
    """Teach, measure and return the figures (see the module docstring)."""
    stream = make_stream(n_taught=classes, n_never_taught=0, seed=0)
    robot_a = Learner(LearnerConfig())
    for obj in stream.taught:
        robot_a.learn(short_name(obj), robot_a.encode_images(stream.frames(obj, 'train', 0,
                                                                          frames)))
    result = {'classes': classes, 'frames_per_lesson': frames,
              'input_size': robot_a.config.input_size,
              'deep_shape': list(robot_a.deep_shape), 'feature_dim': robot_a.feature_dim,
              'before_consolidation': _sizes(robot_a)}
    export_s, (manifest, tensors, pack_id) = _median_time(
        lambda: robot_a.export_classes(None, origin='/robot_a/learner').encode())
    decode_s, (pack, _) = _median_time(lambda: decode(manifest, tensors))
    robot_b = Learner(LearnerConfig())
    start = time.perf_counter()
    report = robot_b.import_pack(pack, pack_id)
    result.update(all_classes_bytes=len(manifest) + len(tensors), export_seconds=export_s,
                  decode_seconds=decode_s, import_seconds=time.perf_counter() - start,
                  imported=len(report.imported))
    if consolidate:
        start = time.perf_counter()
        robot_a.consolidate()
        result['consolidation_seconds'] = time.perf_counter() - start
        result['after_consolidation'] = _sizes(robot_a)
    return result


def _print(result: dict) -> None:
    print(f"{result['classes']} classes, {result['frames_per_lesson']}-frame lessons, "
          f"{result['input_size']} px (deep latent {result['deep_shape']} uint8, pool vector "
          f"{result['feature_dim']} float32)")
    for key in ('before_consolidation', 'after_consolidation'):
        rows = result.get(key)
        if not rows:
            continue
        sizes = [r['bytes'] for r in rows]
        median = statistics.median(sizes) / 1e6
        what = key.replace('_', ' ')
        print(f'{what}: pack per class median {median:.2f} MB (min '
              f'{min(sizes) / 1e6:.2f}, max {max(sizes) / 1e6:.2f}); per class '
              f"{rows[0]['pool_vectors']} pool vectors, {rows[0]['deep_latents']} deep replay "
              f"and {rows[0]['pending_latents']} pending deep latents")
    print(f"pack of all {result['classes']} classes: {result['all_classes_bytes'] / 1e6:.2f} MB;"
          f" export + encode {result['export_seconds']:.3f} s, verify + decode "
          f"{result['decode_seconds']:.3f} s, import into robot B {result['import_seconds']:.3f} s"
          f" ({result['imported']} classes)")
    if 'consolidation_seconds' in result:
        print(f"consolidation on robot A: {result['consolidation_seconds']:.1f} s")


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print the figures (and write them as JSON with ``--json``)."""
    parser = argparse.ArgumentParser(prog='python -m cl_core_ros.tools.bench_packs',
                                     description=__doc__.split('\n\n')[0])
    parser.add_argument('--classes', type=int, default=8, help='objects taught (default 8)')
    parser.add_argument('--frames', type=int, default=100, help='frames per lesson (100)')
    parser.add_argument('--consolidate', action='store_true',
                        help='measure again after a deep consolidation')
    parser.add_argument('--json', type=Path, default=None, help='write the figures here')
    args = parser.parse_args(argv)
    fix_heap_thresholds()  # as the nodes do (it can consolidate)
    result = run(args.classes, args.frames, args.consolidate)
    _print(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == '__main__':
    sys.exit(main())
