//! The service registry's instances as the control plane last sent them: what Upstreams with
//! `discovery` compile their endpoints from. Not configuration: it has no version, is never
//! cached to disk (leases do not outlive their holders), and stays empty in standalone mode.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, Mutex, PoisonError},
};

use gateway_proto::v1;

/// Endpoints by service.
#[derive(Debug, Default)]
pub struct Services {
    by_service: Mutex<BTreeMap<Arc<str>, Arc<[v1::Endpoint]>>>,
}

impl Services {
    /// The endpoints of `service` (none when it has no instance, or was never heard of).
    pub fn endpoints(&self, service: &str) -> Arc<[v1::Endpoint]> {
        self.lock()
            .get(service)
            .cloned()
            .unwrap_or_else(|| Arc::new([]))
    }

    /// Takes a `Services` message; returns the services whose endpoints it changed.
    pub fn apply(&self, message: v1::Services) -> BTreeSet<Arc<str>> {
        let mut held = self.lock();
        let mut changed = BTreeSet::new();
        let mut listed = BTreeSet::new();
        for entry in message.services {
            let name: Arc<str> = entry.service.into();
            listed.insert(name.clone());
            let before = held.get(&name).map(|e| &**e);
            if before.unwrap_or(&[]) == entry.endpoints.as_slice() {
                continue;
            }
            if entry.endpoints.is_empty() {
                held.remove(&name);
            } else {
                held.insert(name.clone(), entry.endpoints.into());
            }
            changed.insert(name);
        }
        if message.complete {
            // The whole registry: what it does not list has no instance.
            held.retain(|name, _| {
                let keep = listed.contains(name);
                if !keep {
                    changed.insert(name.clone());
                }
                keep
            });
        }
        changed
    }

    /// Every service with its endpoints' addresses, for `/config`.
    pub fn addresses(&self) -> BTreeMap<String, Vec<String>> {
        self.lock()
            .iter()
            .map(|(name, endpoints)| {
                let addresses = endpoints.iter().map(|e| e.address.clone()).collect();
                (name.to_string(), addresses)
            })
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<Arc<str>, Arc<[v1::Endpoint]>>> {
        self.by_service
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(service: &str, ports: &[u16]) -> v1::ServiceInstances {
        v1::ServiceInstances {
            service: service.into(),
            endpoints: ports
                .iter()
                .map(|p| v1::Endpoint {
                    address: format!("127.0.0.1:{p}"),
                    weight: Some(1),
                })
                .collect(),
        }
    }

    fn names(changed: &BTreeSet<Arc<str>>) -> Vec<&str> {
        changed.iter().map(|n| &**n).collect()
    }

    #[test]
    fn changes_are_what_differs() {
        let services = Services::default();
        let whole = v1::Services {
            services: vec![entry("users", &[1, 2]), entry("orders", &[3])],
            complete: true,
        };
        assert_eq!(names(&services.apply(whole.clone())), ["orders", "users"]);
        assert!(
            services.apply(whole).is_empty(),
            "the same again changes nothing"
        );
        let delta = v1::Services {
            services: vec![entry("users", &[1]), entry("orders", &[3])],
            complete: false,
        };
        assert_eq!(names(&services.apply(delta)), ["users"]);
        assert_eq!(services.endpoints("users").len(), 1);
        let none = v1::Services {
            services: vec![entry("users", &[])],
            complete: false,
        };
        assert_eq!(names(&services.apply(none)), ["users"]);
        assert!(services.endpoints("users").is_empty());
        assert!(services.endpoints("never-heard-of").is_empty());
        // The whole registry again, after a reconnect: what it leaves out is gone.
        let whole = v1::Services {
            services: vec![entry("payments", &[4])],
            complete: true,
        };
        assert_eq!(names(&services.apply(whole)), ["orders", "payments"]);
        assert_eq!(
            services.addresses(),
            BTreeMap::from([("payments".into(), vec!["127.0.0.1:4".into()])])
        );
    }
}
