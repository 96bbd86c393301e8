//! One query in, one answer out: parses the message (FORMERR when it does not parse, and no
//! answer at all to a packet too short to carry an ID or to a response), answers names in the
//! cluster domain and known reverse names from the zone, and forwards everything else. Answers
//! that do not fit the client's UDP payload size are sent truncated, so that it retries over TCP.

use std::sync::Arc;
use std::time::Instant;

use hickory_proto::op::{Edns, Header, Message, MessageType, Metadata, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};
use tokio::sync::watch;

use super::Transport;
use super::forward::Forwarder;
use super::metrics::Metrics;
use super::zone::{self, Answer, Zone};

/// The UDP payload a client without EDNS can take (RFC 1035).
const PLAIN_UDP_PAYLOAD: u16 = 512;
/// The UDP payload this server advertises and honours at most (the DNS flag day 2020 value).
const MAX_UDP_PAYLOAD: u16 = 1232;

/// Answers queries; cheap to share between the UDP and TCP listeners.
pub(super) struct Handler {
    origin: Name,
    /// `None` until the informers have synced and the first zone is built.
    zone: watch::Receiver<Option<Arc<Zone>>>,
    forwarder: Forwarder,
    metrics: Arc<Metrics>,
}

impl Handler {
    pub(super) fn new(
        origin: Name,
        zone: watch::Receiver<Option<Arc<Zone>>>,
        forwarder: Forwarder,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            origin,
            zone,
            forwarder,
            metrics,
        }
    }

    /// The answer to the DNS message `packet` received over `transport`, or `None` when
    /// nothing should be sent back.
    pub(super) async fn handle(&self, packet: &[u8], transport: Transport) -> Option<Vec<u8>> {
        let started = Instant::now();
        let header = Header::read(&mut BinDecoder::new(packet)).ok()?;
        if header.metadata.message_type == MessageType::Response {
            return None;
        }
        let (qtype, edns, reply) = match self.parse(packet, &header) {
            Ok(request) => {
                let reply = self.answer(&request, packet, transport).await;
                (Some(request.queries[0].query_type()), request.edns, reply)
            }
            Err(rcode) => (None, None, Reply::Message(empty_response(&header.metadata, rcode))),
        };
        let (bytes, rcode) = match reply {
            Reply::Message(message) => {
                let rcode = message.metadata.response_code;
                (encode(message, edns.as_ref(), transport)?, rcode)
            }
            Reply::Forwarded(bytes) => {
                let rcode = ResponseCode::from_low(bytes[3] & 0x0f);
                (bytes, rcode)
            }
        };
        self.metrics.observe(transport, qtype, rcode, started.elapsed());
        Some(bytes)
    }

    /// The request, or the rcode that refuses it.
    fn parse(&self, packet: &[u8], header: &Header) -> Result<Message, ResponseCode> {
        if header.metadata.op_code != OpCode::Query {
            return Err(ResponseCode::NotImp);
        }
        // Checked before parsing, which would size its buffers by the claimed counts.
        if header.counts.queries != 1 {
            return Err(ResponseCode::FormErr);
        }
        Message::from_vec(packet).map_err(|err| {
            tracing::debug!(error = %err, "malformed query");
            ResponseCode::FormErr
        })
    }

    async fn answer(&self, request: &Message, packet: &[u8], transport: Transport) -> Reply {
        let question = &request.queries[0];
        let name = question.name();
        let ours = question.query_class() == DNSClass::IN;
        let zone = self.zone.borrow().clone();
        let answer = match zone {
            Some(zone) if ours => zone.lookup(name, question.query_type()),
            None if ours && zone::in_domain(&self.origin, name) => Some(Answer {
                rcode: ResponseCode::ServFail,
                ..Answer::default()
            }),
            _ => None,
        };
        let Some(mut answer) = answer else {
            return match self.forwarder.forward(packet, transport).await {
                Ok(bytes) => Reply::Forwarded(bytes),
                Err(err) => {
                    tracing::warn!(name = %name, error = %crate::error_chain(&err), "forwarding failed");
                    let mut response = empty_response(&request.metadata, ResponseCode::ServFail);
                    response.add_query(question.clone());
                    Reply::Message(response)
                }
            };
        };
        if let Some(target) = answer.chase.take() {
            self.chase(&target, question.query_type(), transport, &mut answer).await;
        }
        let mut response = empty_response(&request.metadata, answer.rcode);
        // The zone's own records; SERVFAIL says it has none yet.
        response.metadata.authoritative = answer.rcode != ResponseCode::ServFail;
        response.metadata.recursion_available = true;
        response.add_query(question.clone());
        response.insert_answers(answer.answers);
        response.insert_authorities(answer.authorities);
        response.insert_additionals(answer.additionals);
        Reply::Message(response)
    }

    /// Adds upstream's records for `target` (where an ExternalName's CNAME leads) to `answer`,
    /// as CoreDNS does; without them the client has the CNAME alone.
    async fn chase(&self, target: &Name, qtype: RecordType, transport: Transport, answer: &mut Answer) {
        let mut query = Message::query();
        query.metadata.recursion_desired = true;
        query.add_query(Query::query(target.clone(), qtype));
        let Ok(bytes) = query.to_vec() else { return };
        match self.forwarder.forward(&bytes, transport).await {
            Ok(reply) => match Message::from_vec(&reply) {
                Ok(reply) => {
                    answer.rcode = reply.metadata.response_code;
                    answer.answers.extend(reply.answers);
                }
                Err(err) => tracing::debug!(name = %target, error = %err, "upstream answered garbage"),
            },
            Err(err) => {
                tracing::debug!(name = %target, error = %crate::error_chain(&err), "resolving a CNAME target failed")
            }
        }
    }
}

enum Reply {
    Message(Message),
    /// An upstream's answer, passed on as it came.
    Forwarded(Vec<u8>),
}

/// A response to the request with this header: `rcode`, nothing else yet.
fn empty_response(request: &Metadata, rcode: ResponseCode) -> Message {
    let mut message = Message::response(request.id, request.op_code);
    message.metadata = Metadata::response_from_request(request);
    message.metadata.response_code = rcode;
    message
}

/// The wire form of `response` to `request`: with an OPT record when the request had one (RFC
/// 6891), and truncated when it exceeds the client's UDP payload size.
fn encode(mut response: Message, client_edns: Option<&Edns>, transport: Transport) -> Option<Vec<u8>> {
    let limit = match client_edns {
        Some(edns) => edns.max_payload().clamp(PLAIN_UDP_PAYLOAD, MAX_UDP_PAYLOAD),
        None => PLAIN_UDP_PAYLOAD,
    };
    if client_edns.is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(MAX_UDP_PAYLOAD);
        response.set_edns(edns);
    }
    let bytes = response.to_vec().ok()?;
    if transport == Transport::Udp && bytes.len() > usize::from(limit) {
        return response.truncate().to_vec().ok();
    }
    Some(bytes)
}
