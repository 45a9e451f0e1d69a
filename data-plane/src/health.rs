//! Endpoint health: the live state each endpoint keeps across swaps ([`state`]: requests in
//! flight, errors in a row and ejections, the active checks' verdict) and the active checkers
//! that probe it ([`check`]).

pub mod check;
pub mod state;

pub use self::{
    check::{Checker, Settings},
    state::{EndpointState, Passive, now_ms},
};
