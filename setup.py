"""Build of the NetFlow normaliser's compiled fast path (everything else is in pyproject.toml).

The extension is optional: without a C compiler and the Python headers, pip installs the
package without it and `wazuh-anomaly netflow normalize` runs the Python code, which
writes the same events (docs/netflow.md, "Throughput").
"""
from setuptools import Extension, setup

setup(ext_modules=[Extension(
    "wazuh_anomaly.netflow.flowfast",
    sources=[f"integration/wazuh_anomaly/netflow/csrc/{name}.c" for name in ("module", "buf", "normalize", "detect")],
    depends=["integration/wazuh_anomaly/netflow/csrc/flowfast.h"],
    extra_compile_args=["-O2", "-std=c11", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Wno-missing-field-initializers"],
    optional=True,
)])
