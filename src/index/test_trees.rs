//! Realistic index entries for tests: kernel-like source trees as a session walks and stores
//! them, from a seeded generator (a test replays from its seed).

use super::Entry;
use crate::catalog::StoredObject;
use crate::format::records::ObjectKind;

/// SplitMix64: a seeded generator for realistic sets (tests replay from their seed).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len() as u64) as usize]
    }
}

/// Names of the kernel-like trees, each list separated by spaces.
const TOP_DIRS: &str = "arch block certs crypto drivers fs include init io_uring ipc kernel lib mm net \
    rust samples scripts security sound tools usr virt Documentation";
const DIR_WORDS: &str = "net ethernet intel e1000e usb core host gadget gpu drm amd display dc i915 \
    media pci platform x86 arm64 boot dts qcom mediatek power supply scsi ata char tty serial input \
    misc iio adc hwmon soc codecs wireless ath ath11k mlx5 broadcom staging ext4 btrfs xfs nfs kvm \
    sched bpf trace irq time clk regulator pinctrl gpio i2c spi mmc mtd nvme target infiniband hw \
    vfio virtio firmware acpi cpufreq thermal watchdog rtc leds phy dma remoteproc thunderbolt video \
    fbdev bindings selftests testing uapi";
const FILE_WORDS: &str = "main core netdev ethtool phy mac regs debugfs sysfs init irq dma ring tx rx \
    param hw common util ops probe pm trace ioctl fw mbx nvm ptp ich8lan 82571 manage defines quirks \
    bus driver dev super inode file dir namei xattr acl extents balloc ialloc page buffer cache queue \
    sched timer lock mutex event link training intel dp hdmi audio clk reset power display mode state \
    ctrl table";
/// Extensions, as often as they occur.
const EXTENSIONS: &str = ".c .c .c .c .c .h .h .h .h .rst .yaml .S .dtsi .dts .txt";

/// The name lists, split.
struct Words {
    top: Vec<&'static str>,
    dirs: Vec<&'static str>,
    files: Vec<&'static str>,
    extensions: Vec<&'static str>,
}

/// Where the kernel-like walk stands: the next id, each stream's next position.
struct Walk {
    rng: Rng,
    words: Words,
    out: Vec<Entry>,
    next_id: u64,
    positions: [u64; 2],
    limit: usize,
}

impl Walk {
    fn add(&mut self, path: Vec<u8>, kind: ObjectKind, size: u64, mode: u32) {
        let stream = self.rng.below(2) as u16;
        let position = self.positions[stream as usize];
        // Stored size: LZ4 roughly halves source code; a record header per piece.
        self.positions[stream as usize] += size / 2 + 48;
        let mut digest = [0u8; 32];
        for chunk in digest.chunks_mut(8) {
            chunk.copy_from_slice(&self.rng.next().to_le_bytes());
        }
        let o = StoredObject {
            id: self.next_id,
            path,
            kind,
            size,
            // Spread over two years: every file its own (a pessimistic case for the deltas).
            mtime: 1_650_000_000 + self.rng.below(63_072_000) as i64,
            mode,
            uid: 1000,
            gid: 1000,
            segment_offset: 0,
            length: size,
            stream,
            part: 0,
            position,
            digest,
        };
        self.next_id += 1;
        self.out.push(Entry::Object(o));
    }

    fn file_name(&mut self) -> String {
        let mut name = self.rng.pick(&self.words.files).to_owned();
        for _ in 0..self.rng.below(3) {
            name.push('_');
            name.push_str(self.rng.pick(&self.words.files));
        }
        if self.rng.below(4) == 0 {
            name.push_str(&self.rng.below(1000).to_string());
        }
        name + self.rng.pick(&self.words.extensions)
    }

    /// Walks a directory: its files, then its subdirectories, in a shuffled (readdir) order.
    fn dir(&mut self, dir: String, depth: u32) {
        if self.out.len() >= self.limit {
            return;
        }
        self.add(dir.clone().into_bytes(), ObjectKind::Dir, 0, 0o40755);
        let mut names: Vec<(String, bool)> = vec![("Makefile".into(), false), ("Kconfig".into(), false)];
        for _ in 0..self.rng.below(40) {
            names.push((self.file_name(), false));
        }
        let subdirs = match depth {
            0 => self.words.top.len() as u64,
            1..=3 => self.rng.below(10),
            _ => self.rng.below(2),
        };
        for i in 0..subdirs {
            let name = match depth {
                0 => self.words.top[i as usize].to_owned(),
                _ => format!(
                    "{}{}",
                    self.rng.pick(&self.words.dirs),
                    ["", "", "", "2", "-core"][self.rng.below(5) as usize]
                ),
            };
            names.push((name, true));
        }
        names.sort();
        names.dedup_by(|a, b| a.0 == b.0);
        for i in (1..names.len()).rev() {
            names.swap(i, self.rng.below(i as u64 + 1) as usize);
        }
        for (name, is_dir) in names {
            let path = format!("{dir}/{name}");
            if is_dir {
                self.dir(path, depth + 1);
            } else if self.out.len() < self.limit {
                let size = 1u64 << (7 + self.rng.below(11));
                let size = size + self.rng.below(size);
                let mode = if self.rng.below(20) == 0 { 0o100755 } else { 0o100644 };
                self.add(path.into_bytes(), ObjectKind::File, size, mode);
            }
        }
    }
}

/// `n` entries of kernel source trees as one session stores them, in walk order.
pub(super) fn kernel_like(n: usize, seed: u64) -> Vec<Entry> {
    let words = Words {
        top: TOP_DIRS.split_whitespace().collect(),
        dirs: DIR_WORDS.split_whitespace().collect(),
        files: FILE_WORDS.split_whitespace().collect(),
        extensions: EXTENSIONS.split_whitespace().collect(),
    };
    let out = Vec::with_capacity(n);
    let mut walk = Walk { rng: Rng(seed), words, out, next_id: 1, positions: [0; 2], limit: n };
    let mut tree = 0;
    while walk.out.len() < n {
        walk.dir(format!("src/linux-6.{tree}"), 0);
        tree += 1;
    }
    walk.out
}
