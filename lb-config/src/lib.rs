//! ldirectord configuration: parser and typed model.
