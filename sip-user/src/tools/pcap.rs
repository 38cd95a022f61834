//! The UDP datagrams of a pcap or pcapng capture (tcpdump, sngrep `-O`, Wireshark), for
//! `classify --pcap` and `parse --pcap`: a capture from the field replayed through the fast
//! path and the parser. Files through `pcap-file`, frames sliced by `etherparse` (Ethernet with
//! VLAN tags, Linux cooked captures of `-i any`, raw IP).

use std::{
    fs::File,
    io::{BufReader, Read},
    net::{IpAddr, SocketAddr},
    path::Path,
};

use etherparse::{NetSlice, SlicedPacket, TransportSlice};
use pcap_file::{
    DataLink,
    pcap::PcapReader,
    pcapng::{Block, PcapNgReader},
};

/// One UDP datagram of a capture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datagram {
    /// The packet's number in the file, from 1 (as Wireshark counts).
    pub number: usize,
    pub source: SocketAddr,
    pub destination: SocketAddr,
    pub payload: Vec<u8>,
}

/// What a capture holds.
#[derive(Debug, Default)]
pub struct Capture {
    pub datagrams: Vec<Datagram>,
    /// Packets that are not UDP over IP (TCP, ARP, fragments…), or of a link type not read.
    pub skipped: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum PcapError {
    #[error("reading {path}: {error}")]
    Read { path: String, error: String },
    #[error("{path} is neither pcap nor pcapng (its first bytes are {magic:02x?})")]
    Format { path: String, magic: Vec<u8> },
}

/// Reads every packet of the pcap or pcapng file at `path`.
pub fn read(path: &Path) -> Result<Capture, PcapError> {
    let err = |e: &dyn std::fmt::Display| PcapError::Read {
        path: path.display().to_string(),
        error: e.to_string(),
    };
    let mut file = BufReader::new(File::open(path).map_err(|e| err(&e))?);
    let mut magic = [0u8; 4];
    file.read_exact(&mut magic).map_err(|e| err(&e))?;
    let file = BufReader::new(File::open(path).map_err(|e| err(&e))?);
    let mut capture = Capture::default();
    let mut number = 0;
    let mut take = |link: DataLink, data: &[u8]| {
        number += 1;
        match udp_of(link, data) {
            Some((source, destination, payload)) => capture.datagrams.push(Datagram {
                number,
                source,
                destination,
                payload: payload.to_vec(),
            }),
            None => capture.skipped += 1,
        }
    };
    match u32::from_le_bytes(magic) {
        0x0a0d_0d0a => {
            let mut reader = PcapNgReader::new(file).map_err(|e| err(&e))?;
            let mut links: Vec<DataLink> = Vec::new();
            while let Some(block) = reader.next_block() {
                match block.map_err(|e| err(&e))? {
                    Block::InterfaceDescription(i) => links.push(i.linktype),
                    Block::EnhancedPacket(p) => {
                        let link = links.get(p.interface_id as usize).copied();
                        take(link.unwrap_or(DataLink::ETHERNET), &p.data);
                    }
                    Block::SimplePacket(p) => {
                        take(
                            links.first().copied().unwrap_or(DataLink::ETHERNET),
                            &p.data,
                        );
                    }
                    _ => {}
                }
            }
        }
        0xa1b2_c3d4 | 0xd4c3_b2a1 | 0xa1b2_3c4d | 0x4d3c_b2a1 => {
            let mut reader = PcapReader::new(file).map_err(|e| err(&e))?;
            let link = reader.header().datalink;
            while let Some(packet) = reader.next_packet() {
                take(link, &packet.map_err(|e| err(&e))?.data);
            }
        }
        _ => {
            return Err(PcapError::Format {
                path: path.display().to_string(),
                magic: magic.to_vec(),
            });
        }
    }
    Ok(capture)
}

/// The ends and payload of a UDP datagram in an unfragmented frame of `link`.
fn udp_of(link: DataLink, data: &[u8]) -> Option<(SocketAddr, SocketAddr, &[u8])> {
    let sliced = match link {
        DataLink::ETHERNET => SlicedPacket::from_ethernet(data),
        DataLink::LINUX_SLL => SlicedPacket::from_linux_sll(data),
        DataLink::RAW | DataLink::IPV4 | DataLink::IPV6 => SlicedPacket::from_ip(data),
        _ => return None,
    }
    .ok()?;
    let (src, dst): (IpAddr, IpAddr) = match sliced.net? {
        NetSlice::Ipv4(ip) if !ip.is_payload_fragmented() => (
            ip.header().source_addr().into(),
            ip.header().destination_addr().into(),
        ),
        NetSlice::Ipv6(ip) if !ip.is_payload_fragmented() => (
            ip.header().source_addr().into(),
            ip.header().destination_addr().into(),
        ),
        _ => return None,
    };
    match sliced.transport? {
        TransportSlice::Udp(udp) => Some((
            SocketAddr::new(src, udp.source_port()),
            SocketAddr::new(dst, udp.destination_port()),
            udp.payload(),
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use pcap_file::{
        pcap::{PcapHeader, PcapPacket, PcapWriter},
        pcapng::{
            PcapNgWriter,
            blocks::{
                enhanced_packet::EnhancedPacketBlock,
                interface_description::InterfaceDescriptionBlock,
            },
        },
    };

    use super::*;
    use crate::tools::frame::FrameSpec;

    fn temp(name: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("sfp-pcap-{name}-{}", std::process::id()))
    }

    #[test]
    fn udp_datagrams_come_out_of_pcap_and_pcapng_and_the_rest_is_counted() {
        let sip = b"OPTIONS sip:a@192.0.2.1 SIP/2.0\r\n\r\n";
        let udp = FrameSpec::ipv4_to_port(5060).build(sip);
        let syn = FrameSpec::ipv4_to_port(5060).build_tcp(0x02);

        let classic = temp("classic.pcap");
        let mut w = PcapWriter::with_header(
            File::create(&classic).unwrap(),
            PcapHeader {
                datalink: DataLink::ETHERNET,
                ..Default::default()
            },
        )
        .unwrap();
        for frame in [&udp, &syn] {
            let ts = std::time::Duration::ZERO;
            w.write_packet(&PcapPacket::new(ts, frame.len() as u32, frame))
                .unwrap();
        }
        drop(w);

        let ng = temp("next.pcapng");
        let mut w = PcapNgWriter::new(File::create(&ng).unwrap()).unwrap();
        w.write_pcapng_block(InterfaceDescriptionBlock {
            linktype: DataLink::ETHERNET,
            snaplen: 0,
            options: vec![],
        })
        .unwrap();
        w.write_pcapng_block(EnhancedPacketBlock {
            interface_id: 0,
            timestamp: std::time::Duration::ZERO,
            original_len: udp.len() as u32,
            data: Cow::Borrowed(&udp),
            options: vec![],
        })
        .unwrap();
        drop(w);

        let read_both = (read(&classic), read(&ng));
        let _ = (std::fs::remove_file(&classic), std::fs::remove_file(&ng));
        let (classic, ng) = (read_both.0.unwrap(), read_both.1.unwrap());
        assert_eq!((classic.datagrams.len(), classic.skipped), (1, 1));
        let d = &classic.datagrams[0];
        assert_eq!(d.number, 1);
        assert_eq!(d.source, "192.0.2.10:5060".parse().unwrap());
        assert_eq!(d.destination, "192.0.2.1:5060".parse().unwrap());
        assert_eq!(d.payload, sip);
        assert_eq!(ng.datagrams, classic.datagrams);
    }

    #[test]
    fn a_file_that_is_no_capture_says_so() {
        let path = temp("not.pcap");
        std::fs::write(&path, b"INVITE sip:x SIP/2.0\r\n").unwrap();
        let e = read(&path).unwrap_err().to_string();
        let _ = std::fs::remove_file(&path);
        assert!(e.contains("neither pcap nor pcapng"), "{e}");
    }
}
