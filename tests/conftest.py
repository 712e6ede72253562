"""Make the top-level scripts importable from tests, whatever the working folder; keep the
demo-set cache of a test session out of the user's home; run torch on one thread (the test
networks are tiny, and a second thread only adds synchronisation, badly so on a busy machine)."""
import os
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
os.environ.setdefault("BRAIN_STYLEGAN_CACHE", tempfile.mkdtemp(prefix="brain-stylegan-test-cache-"))
os.environ.setdefault("OMP_NUM_THREADS", "1")  # also for the scripts the tests start

import torch  # noqa: E402

torch.set_num_threads(1)


def one_line_error(main, argv, capsys) -> str:
    """Run a script's main(argv), expect exit code 2 and one 'error: ...' line on stderr; return it."""
    import pytest
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err
