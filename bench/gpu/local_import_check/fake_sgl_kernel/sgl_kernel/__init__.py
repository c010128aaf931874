# local stand-in for import-chain analysis only (no GPU here)
import importlib.abc
import importlib.machinery
import sys
import types

__version__ = "0.4.5"


class _Dummy:
    def __init__(self, name):
        self._n = name

    def __call__(self, *a, **k):
        raise RuntimeError("fake sgl_kernel: " + self._n)

    def __getattr__(self, k):
        if k.startswith("__"):
            raise AttributeError(k)
        return _Dummy(self._n + "." + k)


def __getattr__(name):
    if name.startswith("__"):
        raise AttributeError(name)
    return _Dummy(name)


class _Loader(importlib.abc.Loader):
    def create_module(self, spec):
        m = types.ModuleType(spec.name)
        m.__path__ = []
        m.__getattr__ = lambda n: (
            (_ for _ in ()).throw(AttributeError(n))
            if n.startswith("__")
            else _Dummy(spec.name + "." + n)
        )
        return m

    def exec_module(self, m):
        pass


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        if fullname.startswith("sgl_kernel."):
            return importlib.machinery.ModuleSpec(fullname, _Loader(), is_package=True)
        return None


sys.meta_path.insert(0, _Finder())
