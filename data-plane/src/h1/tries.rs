//! The tries of one request on a rule that retries, for both front ends and both kinds of
//! upstream: how many are left, the budget's permit for each retry, the endpoint of each (a
//! different one where there is one), and the decision after a failure.

use std::{sync::Arc, time::Duration};

use super::exchange::Failure;
use crate::{
    pipeline::Outcome,
    side::RetryPermit,
    table::{Retry, Upstream, balance::Dispatch},
};

/// The tries of one request (of a rule whose `retry` each method is given again: the rule
/// is the outcome record's once the request ends, so this holds no borrow of it).
pub(crate) struct Tries {
    left: u32,
    /// The endpoint of the current try.
    pub(crate) at: usize,
    /// The current try's count in flight at its endpoint (least request, the breaker).
    pub(crate) dispatch: Option<Dispatch>,
}

impl Tries {
    /// The tries of a request that starts at `at`; `resendable` says whether it can be sent
    /// again at all (its body kept, or none; an idempotent method unless the rule says
    /// otherwise).
    pub(crate) fn new(
        retry: Option<&Retry>,
        upstream: &Upstream,
        resendable: bool,
        (at, dispatch): (usize, Option<Dispatch>),
    ) -> Self {
        if retry.is_some() {
            upstream.side().deposit();
        }
        let left = match retry {
            Some(retry) if resendable => retry.attempts,
            _ => 0,
        };
        Self { left, at, dispatch }
    }

    /// Whether a request is resendable: its body is whole at hand (or it has none), and its
    /// method is idempotent unless the rule says `nonIdempotent`.
    pub(crate) fn resendable(retry: Option<&Retry>, whole: bool, idempotent: bool) -> bool {
        whole && (idempotent || retry.is_some_and(|r| r.non_idempotent))
    }

    /// The budget's permit for another try after this one, if any is left; with it, the try
    /// treats the rule's listed statuses as failures.
    pub(crate) fn permit(&self, upstream: &Upstream) -> Option<RetryPermit> {
        (self.left > 0).then(|| upstream.side().retry()).flatten()
    }

    /// The statuses a try with `permit` treats as failures.
    pub(crate) fn retry_on<'r>(
        retry: Option<&'r Retry>,
        permit: &Option<RetryPermit>,
    ) -> &'r [u16] {
        match (permit, retry) {
            (Some(_), Some(retry)) => &retry.codes,
            _ => &[],
        }
    }

    /// After a try that failed: whether to try again (then after the backoff, on the next
    /// endpoint). Not once anything reached the client, nor for a failure that is no reason
    /// to (a timeout).
    pub(crate) async fn again(
        &mut self,
        retry: Option<&Retry>,
        failure: &Failure,
        permit: Option<RetryPermit>,
        started: bool,
        (upstream, outcome): (&Arc<Upstream>, &mut Outcome),
    ) -> bool {
        let Some(_permit) = permit else {
            return false;
        };
        if !failure.is_retryable() || started {
            return false;
        }
        self.left -= 1;
        outcome.retried = true;
        tokio::time::sleep(retry.map_or(Duration::ZERO, Retry::wait)).await;
        self.at = super::next_try(upstream, self.at, &mut self.dispatch);
        true
    }

    /// After a try whose answer has not reached the client: its answer if it is the last one
    /// (a success refunds the permit), `None` when it is to be tried again.
    pub(crate) async fn after<T>(
        &mut self,
        retry: Option<&Retry>,
        sent: Result<T, Failure>,
        permit: Option<RetryPermit>,
        (upstream, outcome): (&Arc<Upstream>, &mut Outcome),
    ) -> Option<Result<T, Failure>> {
        match sent {
            Ok(answer) => {
                if let Some(permit) = permit {
                    permit.refund();
                }
                Some(Ok(answer))
            }
            Err(failure) => {
                let again = self
                    .again(retry, &failure, permit, false, (upstream, outcome))
                    .await;
                (!again).then_some(Err(failure))
            }
        }
    }
}
