"""Guards on the shape of the test tree itself."""
from collections import defaultdict
from pathlib import Path

TESTS = Path(__file__).parent


def test_test_module_basenames_are_unique():
    # Test directories are not packages, so pytest imports test modules by basename: two files
    # with one name in different folders make collection fail with "import file mismatch".
    seen = defaultdict(list)
    for path in TESTS.rglob("test_*.py"):
        seen[path.name].append(str(path.relative_to(TESTS)))
    clashes = {name: paths for name, paths in seen.items() if len(paths) > 1}
    assert not clashes, f"test modules sharing a basename: {clashes}"
