"""Build-time benchmark, run side by side in one run: cold build (fresh stage cache, shared
package cache), no-op rebuild, and a rebuild after adding one late layer. Prints seconds and
ratios against the cold build. Usage (root): .venv/bin/python bench/build_times.py [recipe]"""

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def doit(env, db, command, *args) -> float:
    start = time.monotonic()
    argv = [sys.executable, "-m", "doit", *([command] if command != "build" else []), "--db-file", str(db),
            *(["build"] if command == "build" else []), *args]
    subprocess.run(argv, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.monotonic() - start


def main(recipe: str = "minimal") -> None:
    with tempfile.TemporaryDirectory(prefix="distonet-bench-", dir=ROOT / "cache") as tmp:
        tmp = Path(tmp)
        recipes = tmp / "recipes"
        shutil.copytree(ROOT / "recipes", recipes)
        env = dict(os.environ, DISTONET_RECIPES=str(recipes), DISTONET_CACHE=str(tmp / "cache"),
                   DISTONET_OUTPUT=str(tmp / "output"))
        # Share the downloaded packages: the benchmark measures building, not the network.
        (tmp / "cache").mkdir()
        os.symlink(ROOT / "cache" / "apt-archives", tmp / "cache" / "apt-archives")
        db = tmp / "doit.db"
        cold = doit(env, db, "build", f"recipe={recipe}")
        noop = doit(env, db, "build", f"recipe={recipe}")
        (recipes / "late.yaml").write_text(f"extends: {recipe}\npackages: {{late: [file]}}\n")
        late = doit(env, db, "build", "recipe=late")
        doit(env, db, "clean", "recipe=late")
        doit(env, db, "clean", f"recipe={recipe}")
    print(f"{'case':<28}{'seconds':>9}{'× cold':>9}")
    for name, secs in [("cold build", cold), ("no-op rebuild", noop), ("extends + one late layer", late)]:
        print(f"{name:<28}{secs:>9.2f}{secs / cold:>9.3f}")


if __name__ == "__main__":
    main(*sys.argv[1:])
