"""``python -m contrast3d`` (also what ``torchrun -m contrast3d`` runs)."""
from contrast3d.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
