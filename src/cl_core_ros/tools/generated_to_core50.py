"""Lay a rendered source (the hard stream, or photos) out as CORe50, with official filelists.

Writes ``OUT/core50_128x128/sS/oO/C_SS_OO_FFF.png`` (11 sessions of every object; s3, s7, s10
are test sessions on backgrounds no training session uses;
:func:`~cl_core_ros.data.generated.write_core50_layout`) and, for every run, batch filelists in
the authors' format with the official structure
(:func:`~cl_core_ros.data.core50_filelists.nicv2_structure`: s1 of one object per category as
batch 0, every object's sessions in order, irregular arrivals; seeded by the run number)::

    OUT/batch_filelists/NIC_v2_79/run0/train_batch_00_filelist.txt ... test_filelist.txt
    OUT/batch_filelists/test_filelist_20.txt

so that ``run_protocol --root OUT --filelists OUT/batch_filelists --scenario nicv2_79``
runs it exactly as a CORe50 run. Usage::

    python -m cl_core_ros.tools.generated_to_core50 --out DIR [--source hard|photos]
        [--objects 15] [--frames 20] [--scenario nicv2_79] [--runs 0-1] [--seed 0]
"""

import argparse
from collections.abc import Sequence
import json
import logging
from pathlib import Path
import sys
import time

from cl_core_ros.data.core50 import Core50Error, scan_core50
from cl_core_ros.data.core50_filelists import (
    FilelistError,
    nicv2_structure,
    SCENARIOS,
    write_official_run,
)
from cl_core_ros.data.generated import make_source, SourceError, write_core50_layout
from cl_core_ros.tools.run_protocol import _runs

logger = logging.getLogger(__name__)

FILELISTS_DIR = 'batch_filelists'
LAYOUT_INFO = 'layout.json'


def write_layout(out: Path, *, source: str = 'hard', objects: int = 15, frames: int = 20,
                 scenario: str = 'nicv2_79', runs: Sequence[int] = (0,), seed: int = 0
                 ) -> dict:
    """Render the layout and write the filelists of ``runs``; return what was written."""
    started = time.perf_counter()
    generated = make_source(source, objects, seed=seed, frame_size=(128, 128))
    ids = write_core50_layout(generated, out, frames=frames)
    scan = scan_core50(out, verify='none')
    sequences = scan.sequences()
    train = [key for key in sequences if key[0] not in (3, 7, 10)]
    tests = [f for key, group in sorted(sequences.items()) if key[0] in (3, 7, 10)
             for f in group]
    per_batch = SCENARIOS[scenario][1]
    run_dirs = {}
    for run in runs:
        batches = nicv2_structure(train, seed=run, per_batch=per_batch)
        run_dirs[run] = write_official_run(
            out / FILELISTS_DIR, scenario, run,
            [[f for key in batch for f in sequences[key]] for batch in batches], tests)
    info = {'source': generated.describe(), 'core50_objects': {str(k): generated.name_of(v)
                                                               for k, v in ids.items()},
            'frames_per_session': frames, 'scenario': scenario,
            'runs': {str(r): str(d) for r, d in run_dirs.items()},
            'seconds': time.perf_counter() - started}
    (out / LAYOUT_INFO).write_text(json.dumps(info, indent=1) + '\n', encoding='utf-8')
    return info


def main(argv: Sequence[str] | None = None) -> int:
    """Run the tool; return the exit code (0 ok, 2 bad input)."""
    parser = argparse.ArgumentParser(prog='python -m cl_core_ros.tools.generated_to_core50',
                                     description=__doc__.split('\n')[0])
    parser.add_argument('--out', required=True, type=Path, help='output folder')
    parser.add_argument('--source', choices=('hard', 'photos'), default='hard')
    parser.add_argument('--objects', type=int, default=15,
                        help='objects (at least 10 for a ten-category first batch)')
    parser.add_argument('--frames', type=int, default=20, help='frames per object-session')
    parser.add_argument('--scenario', choices=sorted(SCENARIOS), default='nicv2_79')
    parser.add_argument('--runs', type=_runs, default=[0], metavar='A-B')
    parser.add_argument('--seed', type=int, default=0, help='seed of the source')
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format='[%(levelname)s] %(name)s: %(message)s')
    try:
        info = write_layout(args.out, source=args.source, objects=args.objects,
                            frames=args.frames, scenario=args.scenario, runs=args.runs,
                            seed=args.seed)
    except (SourceError, FilelistError, Core50Error) as exc:
        print(f'generated_to_core50: {exc}', file=sys.stderr)
        return 2
    print(f'{args.objects} {args.source} objects x 11 sessions x {args.frames} frames under '
          f'{args.out}, filelists of runs {args.runs} under {args.out / FILELISTS_DIR} in '
          f'{info["seconds"]:.0f} s')
    return 0


if __name__ == '__main__':
    sys.exit(main())
