//! Compressor threads: one per core, pinned, each encoding its units in the order it gets them.

use crossbeam_channel::{Receiver, Sender};

use super::pool::Pool;
use super::{Encoded, EncodedBytes, Unit, Work};
use crate::format::{Kind, encode_data_as, encode_pack_as};

/// Encodes units from `input` into buffers from `out_pool` and passes them on in order;
/// returns raw buffers to `raw_pool`. Ends when `input` closes or `output` does. Without
/// `compress`, data is stored as read (framed and checksummed all the same).
pub fn run(input: Receiver<Unit>, output: Sender<Encoded>, raw_pool: Pool, out_pool: Pool, compress: bool) {
    for unit in input {
        let lane = unit.lane;
        let encoded = match unit.work {
            Work::Data { object, offset, last, buf, len } => {
                let mut out = out_pool.take();
                let (n, _) = encode_data_as(object, unit.seq, offset, &buf[..len], last, compress, &mut out)
                    .expect("units are within the record limits and buffers sized for them");
                raw_pool.give(buf);
                Encoded { bytes: EncodedBytes::Pooled(out, n), track: unit.track, raw: len as u64, lane }
            }
            Work::Pack { first, buf, len } => {
                let mut out = out_pool.take();
                let (n, _) = encode_pack_as(first, unit.seq, &buf[..len], compress, &mut out)
                    .expect("packs are within the record limits and buffers sized for them");
                raw_pool.give(buf);
                let raw = match &unit.track {
                    super::Track::Packed(objs) => objs.iter().map(|o| o.length).sum(),
                    _ => 0,
                };
                Encoded { bytes: EncodedBytes::Pooled(out, n), track: unit.track, raw, lane }
            }
            Work::Encoded(v) => {
                // A record an agent compressed carries data: count it as the box's own would.
                let raw = match v.get(5).copied() {
                    Some(k) if k == Kind::Data as u8 => {
                        v.get(32..36).map_or(0, |b| u32::from_le_bytes(b.try_into().expect("4 bytes")) as u64)
                    }
                    Some(k) if k == Kind::Pack as u8 => match &unit.track {
                        super::Track::Packed(objs) => objs.iter().map(|o| o.length).sum(),
                        _ => 0,
                    },
                    _ => 0,
                };
                Encoded { bytes: EncodedBytes::Small(v), track: unit.track, raw, lane }
            }
            Work::Sync => Encoded { bytes: EncodedBytes::Small(Vec::new()), track: unit.track, raw: 0, lane },
        };
        if output.send(encoded).is_err() {
            return;
        }
    }
}
