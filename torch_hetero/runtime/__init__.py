"""Running generated code: building and caching C++ libraries, loading wrappers."""
