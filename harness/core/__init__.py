"""core: what every stage uses and nothing above it.

- errors: the exception classes and their exit codes
- io: atomic writes, JSON and NumPy files
- lock: one writer per run folder
- competition: the competition's files, columns, image shape, classes and metric
- config: settings from pyproject.toml, HARNESS_* variables and flags
- runs: the run folder and the paths inside it
- names: the one grammar of row names (~ bags, +pl pseudo-labels, @int8) and their files
- progress: progress bars and lines on stderr
- device: the CPU class, engines, GPUs
- tfquiet: TensorFlow imported without its start-up noise, with fixed thread pools
"""

__all__ = ["competition", "config", "device", "errors", "io", "lock", "names", "progress", "runs", "tfquiet"]
