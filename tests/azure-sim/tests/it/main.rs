//! Integration tests: a plain reqwest client over TLS drives every flow and documented error and
//! compares status codes, headers and bodies with the real Azure samples in `tests/samples`.

mod acr;
mod anomalies;
mod arg;
mod arm;
mod binary;
mod common;
mod entra;
mod faults;
mod mutations;
