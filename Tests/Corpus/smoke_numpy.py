"""numpy: its C core imports Python modules itself (numpy._core._exceptions, ...)."""
import numpy as np


def main():
    a = np.array([[3.0, 1.0], [1.0, 2.0]])
    x = np.linalg.solve(a, np.array([9.0, 8.0]))
    assert np.allclose(x, [2.0, 3.0]), x
    print("ok numpy", np.__version__, np.linalg.det(a).round(6), x.tolist())


if __name__ == "__main__":
    main()
