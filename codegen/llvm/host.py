"""The host machine as LLVM sees it: native-target initialisation, CPU name and features, and
the identity string a piece of object code is valid for (llvmlite/LLVM versions, CPU)."""

from __future__ import annotations

import functools

import llvmlite
import llvmlite.binding as llvm

__all__ = ["init", "host_features", "host_cpu", "feature_string", "identity"]


@functools.lru_cache(maxsize=None)
def init() -> None:
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    llvm.initialize_native_asmparser()


@functools.lru_cache(maxsize=None)
def host_features() -> dict[str, bool]:
    """Host CPU features as LLVM reports them (e.g. {"avx512f": True, …})."""
    init()
    return {k: bool(v) for k, v in llvm.get_host_cpu_features().items()}


@functools.lru_cache(maxsize=None)
def host_cpu() -> str:
    init()
    return llvm.get_host_cpu_name()


@functools.lru_cache(maxsize=None)
def feature_string() -> str:
    init()
    return llvm.get_host_cpu_features().flatten()


@functools.lru_cache(maxsize=None)
def identity() -> str:
    """llvmlite and LLVM versions, host CPU name and features: object code compiled under one
    identity is only ever loaded under the same one."""
    return (f"llvmlite {llvmlite.__version__}|llvm {'.'.join(map(str, llvm.llvm_version_info))}|"
            f"{host_cpu()}|{feature_string()}")
