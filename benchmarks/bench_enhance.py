"""Offline enhancement: speed and memory on a long file.

Writes a 10-minute 16 kHz noisy file, enhances it with `leanse enhance`'s code path in a fresh
process, and prints the wall time, the real-time factor and the peak resident memory of that
process next to the size of the audio itself, so the "bounded memory" claim can be read off:

    python benchmarks/bench_enhance.py [--minutes 10] [--preset tiny-mask-rnn] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

CHILD = r"""
import json, resource, sys, time
import torch
from pathlib import Path
from leanse.enhance import enhance_files
from leanse.models import build_model
torch.set_num_threads(int(sys.argv[4]))
model = build_model(sys.argv[3]).eval()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
enhance_files([Path(sys.argv[1])], Path(sys.argv[2]), model)
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"seconds": seconds, "peak_rss_mb": peak / 1024, "rss_before_mb": before / 1024}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--preset", default="tiny-mask-rnn")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    rate = 16000
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "long.wav"
        rng = np.random.default_rng(0)
        with sf.SoundFile(path, "w", rate, 1, subtype="PCM_16") as handle:
            for _ in range(int(args.minutes * 60)):  # one second at a time: the writer stays small too
                t = np.arange(rate) / rate
                second = 0.1 * np.sin(2 * np.pi * 180 * t) + 0.05 * rng.standard_normal(rate)
                handle.write(second.astype(np.float32))
        result = subprocess.run(
            [sys.executable, "-c", CHILD, str(path), str(Path(tmp) / "out"), args.preset, str(args.threads)],
            capture_output=True, text=True, check=True,
        )
        figures = json.loads(result.stdout.strip().splitlines()[-1])
    audio_mb = args.minutes * 60 * rate * 4 / 2**20
    print(f"preset {args.preset}, {args.minutes:g} min at {rate} Hz, {args.threads} thread(s)")
    print(f"wall time           {figures['seconds']:.1f} s")
    print(f"real-time factor    {figures['seconds'] / (args.minutes * 60):.4f}")
    print(f"peak RSS            {figures['peak_rss_mb']:.0f} MB (after loading torch + model: {figures['rss_before_mb']:.0f} MB)")
    print(f"growth while enhancing {figures['peak_rss_mb'] - figures['rss_before_mb']:.0f} MB; "
          f"the file as float32 would be {audio_mb:.0f} MB")


if __name__ == "__main__":
    main()
