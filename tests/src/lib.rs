//! Integration tests for xdirectord live in tests/.
