//! Health checks of real servers, as ldirectord runs them.
