//! A local TNT ExpressConnect on a free port: the shipping service
//! (`/expressconnect/shipping/ship`, the form field `xml_in`: an
//! `ESHIPPER` document, its login, account, both parties and weight
//! checked, answered `COMPLETE:{key}`; `GET_RESULT:{key}` the consignment
//! number; `GET_LABEL:{key}` the label XML) and the tracking service
//! (`/expressconnect/track.do`: a `TrackRequest`'s consignments with their
//! `SummaryCode`, set by the test: INT, DEL, EXC; CNF until then).

use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use warp::Filter;

use super::serve::xml_tag as tag;

pub use super::serve::Parcel;

#[derive(Default)]
pub struct State {
    pub company: String,
    pub password: String,
    pub account: String,
    /// By consignment number; `status` is its SummaryCode.
    pub parcels: HashMap<String, Parcel>,
    /// key -> consignment number.
    keys: HashMap<String, String>,
    pub calls: Vec<String>,
    next: u64,
}

fn error(why: &str) -> String {
    format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?><runtime_error><error_reason>{why}</error_reason></runtime_error>")
}

fn ship(st: &mut State, xml: &str) -> String {
    if tag(xml, "COMPANY") != Some(st.company.as_str())
        || tag(xml, "PASSWORD") != Some(st.password.as_str())
    {
        return error("Invalid login");
    }
    let (Some(sender), Some(receiver)) = (tag(xml, "SENDER"), tag(xml, "RECEIVER")) else {
        return error("SENDER and RECEIVER are required");
    };
    if tag(sender, "ACCOUNT") != Some(st.account.as_str()) {
        return error("The account number is not valid");
    }
    for (who, p) in [("SENDER", sender), ("RECEIVER", receiver)] {
        for k in [
            "COMPANYNAME",
            "STREETADDRESS1",
            "CITY",
            "POSTCODE",
            "COUNTRY",
        ] {
            let v = tag(p, k).unwrap_or("");
            if v.trim().is_empty() || v.contains('<') {
                return error(&format!("{who} {k} is missing or not well-formed"));
            }
        }
    }
    let weight: f64 = tag(xml, "TOTALWEIGHT")
        .and_then(|w| w.parse().ok())
        .unwrap_or(0.0);
    let conref = tag(xml, "CONREF").unwrap_or("");
    if weight <= 0.0 || conref.is_empty() {
        return error("CONREF and TOTALWEIGHT are required");
    }
    st.next += 1;
    let number = format!("GE{:09}WW", st.next);
    st.parcels.insert(
        number.clone(),
        Parcel {
            reference: conref.to_string(),
            to_country: tag(receiver, "COUNTRY").unwrap_or("").to_string(),
            status: "CNF".into(),
            cancelled: false,
        },
    );
    let key = format!("{}", 700_000 + st.next);
    st.keys.insert(key.clone(), number);
    format!("COMPLETE:{key}")
}

fn handle(st: &mut State, xml_in: &str) -> String {
    st.calls.push(xml_in.chars().take(40).collect());
    if let Some(key) = xml_in.strip_prefix("GET_RESULT:") {
        return match st.keys.get(key.trim()) {
            Some(n) => format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?><document><CREATE><CONREF>{}</CONREF><CONNUMBER>{n}</CONNUMBER>\
                 <SUCCESS>Y</SUCCESS></CREATE><SHIP><SUCCESS>Y</SUCCESS></SHIP><PRINT><LABEL>CREATED</LABEL></PRINT></document>",
                st.parcels[n].reference
            ),
            None => error("Unknown key"),
        };
    }
    if let Some(key) = xml_in.strip_prefix("GET_LABEL:") {
        return match st.keys.get(key.trim()) {
            Some(n) => format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?><labelResponse><consignment key=\"{key}\">\
                 <consignmentLabelData><consignmentNumber>{n}</consignmentNumber></consignmentLabelData>\
                 </consignment></labelResponse>"
            ),
            None => error("Unknown key"),
        };
    }
    ship(st, xml_in)
}

fn track(st: &State, xml_in: &str) -> String {
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?><TrackResponse>");
    let mut rest = xml_in;
    while let Some(n) = tag(rest, "ConsignmentNumber") {
        let code = st.parcels.get(n).map_or("CNF", |p| p.status.as_str());
        out.push_str(&format!(
            "<Consignment access=\"public\"><ConsignmentNumber>{n}</ConsignmentNumber><SummaryCode>{code}</SummaryCode></Consignment>"
        ));
        let at = rest.find("</ConsignmentNumber>").unwrap_or(rest.len() - 1) + 1;
        rest = &rest[at..];
    }
    out.push_str("</TrackResponse>");
    out
}

pub struct TntSim {
    pub port: u16,
    pub state: Arc<Mutex<State>>,
    _served: super::serve::Served,
}

impl TntSim {
    pub fn start(company: &str, password: &str, account: &str) -> TntSim {
        let state = Arc::new(Mutex::new(State {
            company: company.into(),
            password: password.into(),
            account: account.into(),
            ..State::default()
        }));
        let (s1, s2) = (state.clone(), state.clone());
        let xml = |text: String| warp::reply::with_header(text, "content-type", "text/xml");
        let ship_route = warp::post()
            .and(warp::path!("expressconnect" / "shipping" / "ship"))
            .and(warp::body::form::<HashMap<String, String>>())
            .map(move |f: HashMap<String, String>| {
                xml(handle(
                    &mut s1.lock(),
                    f.get("xml_in").map_or("", String::as_str),
                ))
            });
        let track_route = warp::post()
            .and(warp::path!("expressconnect" / "track.do"))
            .and(warp::body::form::<HashMap<String, String>>())
            .map(move |f: HashMap<String, String>| {
                xml(track(
                    &s2.lock(),
                    f.get("xml_in").map_or("", String::as_str),
                ))
            });
        let served = super::serve::serve(ship_route.or(track_route));
        TntSim {
            port: served.port,
            state,
            _served: served,
        }
    }

    pub fn base_url(&self) -> String {
        format!(
            "http://127.0.0.1:{}/expressconnect/shipping/ship",
            self.port
        )
    }

    pub fn tracking_url(&self) -> String {
        format!("http://127.0.0.1:{}/expressconnect/track.do", self.port)
    }
}
