"""Wall time of a command with and without other processes keeping cores busy (the CPU-threads measurement).

Usage:
  python benchmarks/threads.py [--repeat 3] [--busy 1] [--env OMP_NUM_THREADS=1] -- COMMAND ...

``--busy K`` starts K busy-loop processes (``python -c 'while True: pass'``) ``--settle`` seconds before the
runs and stops them afterwards. ``{out}`` in the command becomes a fresh temporary directory for each run.
Prints one line per run (wall time, CPU time of the command, 1-minute load average at the start) and the median.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--busy", type=int, default=0, help="busy-loop processes kept running during the runs")
    p.add_argument("--settle", type=float, default=5.0, help="seconds between starting them and the first run")
    p.add_argument("--env", action="append", default=[], metavar="KEY=VALUE", help="environment of the command")
    p.add_argument("--unset", action="append", default=[], metavar="KEY", help="variable removed from it")
    p.add_argument("command", nargs=argparse.REMAINDER)
    args = p.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        p.error("a command is required after --")
    env = dict(os.environ)
    for key in args.unset:
        env.pop(key, None)
    env.update(item.split("=", 1) for item in args.env)
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.busy)]
    times = []
    try:
        if busy:
            time.sleep(args.settle)
        for i in range(args.repeat):
            out = tempfile.mkdtemp(prefix="nasforge-threads-")
            shutil.rmtree(out)  # commands create their own output directory
            load = os.getloadavg()[0]
            cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
            start = time.perf_counter()
            done = subprocess.run([c.replace("{out}", out) for c in command], env=env, check=True,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            times.append(time.perf_counter() - start)
            cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = (cpu_after.ru_utime + cpu_after.ru_stime) - (cpu_before.ru_utime + cpu_before.ru_stime)
            shutil.rmtree(out, ignore_errors=True)
            print(f"run {i + 1}: {times[-1]:.1f} s, CPU {cpu:.1f} s (load average at start {load:.2f})", flush=True)
            for line in done.stderr.splitlines():  # what nasforge chose
                if "CPU thread" in line:
                    print("   ", line, flush=True)
    finally:
        for proc in busy:
            proc.kill()
            proc.wait()
    print(f"median of {len(times)}: {statistics.median(times):.1f} s; busy processes {args.busy}; "
          f"env {' '.join(args.env + ['-' + k for k in args.unset]) or 'unchanged'}")


if __name__ == "__main__":
    main()
