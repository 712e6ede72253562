"""Make the top-level scripts importable from tests, whatever the working folder, and keep
the demo-set cache of a test session out of the user's home."""
import os
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
os.environ.setdefault("BRAIN_STYLEGAN_CACHE", tempfile.mkdtemp(prefix="brain-stylegan-test-cache-"))
