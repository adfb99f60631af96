"""replica's benchmarks: `python -m benchmarks` runs them all and rewrites RESULTS.md."""
