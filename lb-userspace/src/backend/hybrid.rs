//! The agent's backend: XDP and IPVS side by side, each op sent to the data plane its virtual
//! runs on ([`ServiceAttrs::backend`](crate::table::ServiceAttrs)). A virtual whose data plane
//! changes on reload leaves the old one (its reals, then itself) and is built on the new one.

use std::collections::BTreeSet;

use crate::backend::{
    Backend, BackendError, Notes,
    ipvs::IpvsBackend,
    xdp::{XdpBackend, XdpOptions},
};
use crate::table::{
    BackendKind, DesiredTable, ServiceKey,
    diff::{Op, diff_service},
};

/// XDP, IPVS, or both. A data plane no virtual needs is not opened until a reload places a
/// virtual on it.
pub struct Hybrid {
    pub xdp: Option<XdpBackend>,
    pub ipvs: Option<IpvsBackend>,
    /// How to open XDP later; `None` where no interface is configured.
    xdp_options: Option<XdpOptions>,
    /// What both data planes hold, as this backend left them: where each virtual is now.
    model: DesiredTable,
}

impl Hybrid {
    pub fn new(
        xdp: Option<XdpBackend>,
        ipvs: Option<IpvsBackend>,
        xdp_options: Option<XdpOptions>,
    ) -> Result<Hybrid, BackendError> {
        let mut hybrid = Hybrid {
            xdp,
            ipvs,
            xdp_options,
            model: DesiredTable::default(),
        };
        hybrid.model = hybrid.held()?;
        Ok(hybrid)
    }

    /// The data plane `kind`, opened now if no virtual needed it before.
    fn backend(&mut self, kind: BackendKind) -> Result<&mut dyn Backend, BackendError> {
        Ok(match kind {
            BackendKind::Ipvs => {
                if self.ipvs.is_none() {
                    let scope: BTreeSet<ServiceKey> = self.model.services.keys().copied().collect();
                    self.ipvs = Some(IpvsBackend::open(scope)?);
                }
                self.ipvs.as_mut().expect("opened")
            }
            _ => {
                if self.xdp.is_none() {
                    let options = self.xdp_options.as_ref().ok_or_else(|| {
                        BackendError::Unsupported(
                            "the XDP backend needs an interface to attach to".into(),
                        )
                    })?;
                    self.xdp = Some(XdpBackend::open(options)?);
                }
                self.xdp.as_mut().expect("opened")
            }
        })
    }

    /// The ops for each data plane: those of a virtual that stays where it is go there as
    /// they are; a virtual that moves is deleted from its old data plane and added, whole, to
    /// the new one.
    fn route(&self, ops: &[Op]) -> Vec<(BackendKind, Vec<Op>)> {
        let mut next = self.model.clone();
        next.apply_ops(ops);
        let where_ =
            |t: &DesiredTable, key: &ServiceKey| t.services.get(key).map(|s| s.attrs.backend);
        let mut routed: Vec<(BackendKind, Vec<Op>)> = Vec::new();
        let mut send = |kind: BackendKind, op: Op| match routed.iter_mut().find(|(k, _)| *k == kind)
        {
            Some((_, list)) => list.push(op),
            None => routed.push((kind, vec![op])),
        };
        let mut moved: Vec<ServiceKey> = Vec::new();
        for op in ops {
            let key = op.key();
            match (where_(&self.model, key), where_(&next, key)) {
                (Some(before), Some(after)) if before != after => {
                    if !moved.contains(key) {
                        moved.push(*key);
                        for op in diff_service(key, self.model.services.get(key), None) {
                            send(before, op);
                        }
                        for op in diff_service(key, None, next.services.get(key)) {
                            send(after, op);
                        }
                    }
                }
                (before, after) => {
                    // A delete goes where the virtual was; anything else where it will be.
                    let kind = after.or(before).unwrap_or(BackendKind::Xdp);
                    send(kind, op.clone());
                }
            }
        }
        routed
    }
}

impl Backend for Hybrid {
    fn apply(&mut self, ops: &[Op]) -> Result<Notes, BackendError> {
        let mut notes = Notes::new();
        let mut errors = Vec::new();
        for (kind, ops) in self.route(ops) {
            match self.backend(kind).and_then(|b| b.apply(&ops)) {
                Ok(more) => notes.extend(more),
                Err(e) => errors.push(e),
            }
        }
        if errors.is_empty() {
            self.model.apply_ops(ops);
            return Ok(notes);
        }
        // Where things are is no longer known for sure: read it back.
        self.model = self.held()?;
        let mut errors = errors.into_iter();
        let first = errors.next().expect("an error");
        Err(match errors.next() {
            None => first,
            Some(second) => BackendError::Unsupported(format!("{first}; {second}")),
        })
    }

    /// Both data planes' services; a virtual both hold (moved while no agent ran) is reported
    /// on XDP, and left on IPVS for the operator.
    fn held(&self) -> Result<DesiredTable, BackendError> {
        let mut held = match &self.ipvs {
            Some(ipvs) => ipvs.held()?,
            None => DesiredTable::default(),
        };
        if let Some(xdp) = &self.xdp {
            held.services.extend(xdp.held()?.services);
        }
        Ok(held)
    }

    fn refresh(&mut self, desired: Option<&DesiredTable>) -> Result<Notes, BackendError> {
        let mut notes = Notes::new();
        if let Some(xdp) = &mut self.xdp {
            notes.extend(xdp.refresh(desired)?);
        }
        if let Some(ipvs) = &mut self.ipvs {
            notes.extend(ipvs.refresh(desired)?);
        }
        Ok(notes)
    }

    fn prepare(
        &mut self,
        kinds: &BTreeSet<BackendKind>,
    ) -> Result<(), (BackendKind, BackendError)> {
        for &kind in kinds {
            self.backend(kind).map_err(|e| (kind, e))?;
        }
        Ok(())
    }

    fn shutdown(&mut self) -> Result<(), BackendError> {
        if let Some(xdp) = &mut self.xdp {
            xdp.shutdown()?;
        }
        if let Some(ipvs) = &mut self.ipvs {
            ipvs.shutdown()?;
        }
        Ok(())
    }
}
