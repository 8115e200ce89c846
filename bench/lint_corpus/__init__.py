"""The lint corpus: minimal reproductions of numerical bugs filed in public issue trackers
(bugs.py) and numerically sound models and losses written the way libraries write them (clean.py).
bench/lint.py runs hnfc.lint on both."""
