import CPython
func probe() -> Int { frost_python_version_hex() }
