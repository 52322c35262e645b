//! Which CPU each core's loop runs on.
//!
//! The machine's CPU list is read once, when the runtime is built, before
//! any thread is pinned: a pinned thread sees only its own CPU in the list,
//! so reading it later, from a loop thread, would place every core on one
//! CPU. More cores than CPUs is allowed: cores are dealt to CPUs in turn,
//! and a core that shares its CPU with another is told so, so that it never
//! spins without yielding.

use core_affinity::CoreId as Cpu;

/// The CPUs the process may run on, read once.
#[derive(Clone, Debug)]
pub struct Placement {
    cpus: Vec<Cpu>,
    pin: bool,
}

impl Placement {
    /// Reads the CPUs this process may run on. With `pin` false, or if the
    /// list cannot be read, loops are not pinned.
    pub fn detect(pin: bool) -> Self {
        let cpus = core_affinity::get_core_ids().unwrap_or_default();
        if pin && cpus.is_empty() {
            log::warn!("cannot read the CPU list; core loops will not be pinned");
        }
        Placement { cpus, pin }
    }

    /// A placement over the given CPU ids (for tests and explicit layouts).
    pub fn from_cpus(cpus: &[usize]) -> Self {
        Placement {
            cpus: cpus.iter().map(|&id| Cpu { id }).collect(),
            pin: true,
        }
    }

    /// Number of CPUs available.
    pub fn cpu_count(&self) -> usize {
        if self.cpus.is_empty() {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            self.cpus.len()
        }
    }

    /// The CPU core `core` is pinned to, if pinning.
    pub fn cpu_of(&self, core: usize) -> Option<usize> {
        (self.pin && !self.cpus.is_empty()).then(|| self.cpus[core % self.cpus.len()].id)
    }

    /// Whether, with `cores` cores, core `core` shares a CPU with another.
    pub fn shares_cpu(&self, core: usize, cores: usize) -> bool {
        let cpus = self.cpu_count();
        if self.cpu_of(core).is_none() {
            // Unpinned: the scheduler may put any two loops together.
            return cores > cpus;
        }
        // Cores are dealt in turn: CPU `core % cpus` hosts every core with
        // the same remainder.
        (core % cpus) + cpus < cores
    }

    /// Pins the calling thread to `core`'s CPU, if pinning. Returns whether
    /// it pinned.
    pub(crate) fn pin_current(&self, core: usize) -> bool {
        match self.cpu_of(core) {
            Some(id) => core_affinity::set_for_current(Cpu { id }),
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cores_are_dealt_to_cpus_in_turn() {
        let placement = Placement::from_cpus(&[4, 5]);
        let cpus: Vec<_> = (0..4).map(|core| placement.cpu_of(core)).collect();
        assert_eq!(cpus, [Some(4), Some(5), Some(4), Some(5)]);
    }

    #[test]
    fn sharing_is_known_per_core() {
        let placement = Placement::from_cpus(&[0, 1]);
        assert!(!placement.shares_cpu(0, 2));
        assert!(!placement.shares_cpu(1, 2));
        // Three cores on two CPUs: core 0 and 2 share CPU 0, core 1 is alone.
        assert!(placement.shares_cpu(0, 3));
        assert!(!placement.shares_cpu(1, 3));
        assert!(placement.shares_cpu(2, 3));
    }
}
