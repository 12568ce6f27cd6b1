"""The metrics extra stays optional: `import symcore` (and symcore.metrics itself) imports
neither zss nor the worker processes; zss is loaded on first use."""

import subprocess
import sys


def test_import_symcore_does_not_import_zss():
    code = ("import sys, symcore, symcore.metrics; "
            "print('zss' in sys.modules, 'sympy' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split()[0] == "False", out.stdout
