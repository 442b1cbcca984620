//! This process's resources, read from `/proc` at each scrape through `procfs`, which asks
//! the kernel for the page size and the clock ticks rather than assuming them. Linux only:
//! elsewhere the series are absent.

use prometheus_client::{collector::Collector, encoding::DescriptorEncoder};

#[derive(Debug)]
pub(super) struct Resources;

#[cfg(not(target_os = "linux"))]
impl Collector for Resources {
    fn encode(&self, _: DescriptorEncoder) -> std::fmt::Result {
        Ok(())
    }
}

#[cfg(target_os = "linux")]
impl Collector for Resources {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        use procfs::{process::LimitValue, WithCurrentSystemInfo};
        use prometheus_client::metrics::{counter::ConstCounter, gauge::ConstGauge};

        use super::write_one;

        let Ok(me) = procfs::process::Process::myself() else { return Ok(()) };
        let Ok(stat) = me.stat() else { return Ok(()) };
        let e = &mut encoder;
        let ticks = procfs::ticks_per_second() as f64;
        write_one(
            e,
            "process_cpu_seconds",
            "CPU time of this process, user and system",
            ConstCounter::new((stat.utime + stat.stime) as f64 / ticks),
        )?;
        write_one(e, "process_resident_memory_bytes", "Resident memory of this process", ConstGauge::new(stat.rss_bytes().get()))?;
        write_one(e, "process_virtual_memory_bytes", "Virtual memory of this process", ConstGauge::new(stat.vsize))?;
        if let Ok(boot) = procfs::boot_time_secs() {
            let started = boot as f64 + stat.starttime as f64 / ticks;
            write_one(e, "process_start_time_seconds", "Unix time this process started", ConstGauge::new(started))?;
        }
        write_one(e, "process_threads", "Threads of this process", ConstGauge::new(stat.num_threads))?;
        if let Ok(open) = me.fd_count() {
            write_one(e, "process_open_fds", "Open file descriptors of this process", ConstGauge::new(open as i64))?;
        }
        if let Ok(LimitValue::Value(max)) = me.limits().map(|l| l.max_open_files.soft_limit) {
            write_one(e, "process_max_fds", "The most file descriptors this process may open (its soft limit)", ConstGauge::new(max))?;
        }
        Ok(())
    }
}
