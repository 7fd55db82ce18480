//! The ESI public-contract model and the per-region summary computed from it.
//!
//! [`Contract`] mirrors one element of `GET /contracts/public/{region_id}/` exactly as ESI returns
//! it (optional fields are absent, not null, when they do not apply). [`summarize`] is the pure
//! aggregation behind the example's `ContractAggregationService`: counts and ISK totals by
//! contract type, the most expensive item exchanges and the count expiring within 24 hours.
//!
//! Timestamps are [`Timestamp`]s (unix seconds) with their own RFC 3339 and HTTP-date parsing
//! and formatting, so the example needs neither `chrono` nor `time`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// How many item exchanges [`RegionSummary::top_item_exchanges`] keeps.
pub(crate) const TOP_ITEM_EXCHANGES: usize = 10;

/// The window, in seconds after [`RegionSummary::computed_at`], counted by
/// [`RegionSummary::expiring_within_24h`].
pub(crate) const EXPIRY_WINDOW_SECS: i64 = 24 * 60 * 60;

/// The type of a contract, as ESI spells it (`item_exchange`, `auction`, `courier`, `loan`,
/// `unknown`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ContractType {
    /// Items (and/or ISK) exchanged for a fixed `price`.
    ItemExchange,
    /// Items sold to the highest bidder; `price` is the starting bid, `buyout` optional.
    Auction,
    /// Items hauled to `end_location_id` for a `reward`, secured by a `collateral`.
    Courier,
    /// ISK lent against items.
    Loan,
    /// ESI's own `unknown`; any type string this model does not know also lands here rather than
    /// failing the whole page.
    #[serde(other)]
    Unknown,
}

impl ContractType {
    /// Every type, in the order summaries list them.
    pub(crate) const ALL: [Self; 5] = [Self::ItemExchange, Self::Auction, Self::Courier, Self::Loan, Self::Unknown];

    /// The ESI spelling (`item_exchange`, ...).
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            Self::ItemExchange => "item_exchange",
            Self::Auction => "auction",
            Self::Courier => "courier",
            Self::Loan => "loan",
            Self::Unknown => "unknown",
        }
    }
}

impl fmt::Display for ContractType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One public contract, field for field as ESI's `GetContractsPublicRegionId200Ok`.
#[allow(clippy::struct_field_names, reason = "ESI's field names, kept as they are")]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Contract {
    /// Contract id (int32).
    pub(crate) contract_id: i32,
    /// Contract type; ESI's field is named `type`.
    #[serde(rename = "type")]
    pub(crate) kind: ContractType,
    /// The issuing character.
    pub(crate) issuer_id: i32,
    /// The issuer's corporation.
    pub(crate) issuer_corporation_id: i32,
    /// Creation time.
    pub(crate) date_issued: Timestamp,
    /// Expiry time.
    pub(crate) date_expired: Timestamp,
    /// Price (item exchanges, auctions' starting bid, loans).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) price: Option<f64>,
    /// Buyout price (auctions only, and not always).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) buyout: Option<f64>,
    /// Reward for hauling (couriers only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) reward: Option<f64>,
    /// Collateral (couriers only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) collateral: Option<f64>,
    /// Volume of the items in m3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) volume: Option<f64>,
    /// Days the acceptor has to complete a courier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) days_to_complete: Option<i32>,
    /// Station or structure the contract starts at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) start_location_id: Option<i64>,
    /// Destination of a courier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) end_location_id: Option<i64>,
    /// Issued on behalf of the issuer's corporation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) for_corporation: Option<bool>,
    /// Free text, often empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) title: Option<String>,
}

impl Contract {
    /// The ISK amount this contract adds to its type's total in a [`RegionSummary`]:
    ///
    /// - item exchange: `price`;
    /// - auction: `price`, the starting bid (the buyout is optional and often absent, so it is
    ///   not a comparable figure);
    /// - courier: `reward`, what the issuer pays (the collateral is a deposit, not a payment);
    /// - loan: `price`;
    /// - unknown: nothing.
    ///
    /// An absent field counts as zero.
    pub(crate) fn isk_value(&self) -> f64 {
        let value = match self.kind {
            ContractType::ItemExchange | ContractType::Auction | ContractType::Loan => self.price,
            ContractType::Courier => self.reward,
            ContractType::Unknown => None,
        };
        value.unwrap_or(0.0)
    }
}

/// Count and ISK total of one contract type (see [`Contract::isk_value`] for the ISK figure).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct TypeTotals {
    /// Contracts of this type.
    pub(crate) count: usize,
    /// Sum of their [`Contract::isk_value`], in ISK.
    pub(crate) isk_total: f64,
}

/// [`TypeTotals`] for every contract type.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct TypeBreakdown {
    /// Item exchanges (ISK: price).
    pub(crate) item_exchange: TypeTotals,
    /// Auctions (ISK: starting price).
    pub(crate) auction: TypeTotals,
    /// Couriers (ISK: reward).
    pub(crate) courier: TypeTotals,
    /// Loans (ISK: price).
    pub(crate) loan: TypeTotals,
    /// Unknown types (ISK: always 0).
    pub(crate) unknown: TypeTotals,
}

impl TypeBreakdown {
    /// The totals of one type.
    pub(crate) const fn get(&self, kind: ContractType) -> &TypeTotals {
        match kind {
            ContractType::ItemExchange => &self.item_exchange,
            ContractType::Auction => &self.auction,
            ContractType::Courier => &self.courier,
            ContractType::Loan => &self.loan,
            ContractType::Unknown => &self.unknown,
        }
    }

    /// The totals of one type, mutably.
    const fn get_mut(&mut self, kind: ContractType) -> &mut TypeTotals {
        match kind {
            ContractType::ItemExchange => &mut self.item_exchange,
            ContractType::Auction => &mut self.auction,
            ContractType::Courier => &mut self.courier,
            ContractType::Loan => &mut self.loan,
            ContractType::Unknown => &mut self.unknown,
        }
    }
}

/// One of the most expensive item exchanges of a region.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct TopContract {
    /// Contract id.
    pub(crate) contract_id: i32,
    /// Price in ISK.
    pub(crate) price: f64,
    /// Title; empty when the contract has none.
    pub(crate) title: String,
    /// Volume in m3, when ESI gives it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) volume: Option<f64>,
    /// Where the items are, when ESI gives it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) start_location_id: Option<i64>,
    /// When the contract expires.
    pub(crate) date_expired: Timestamp,
}

/// The aggregate of one region's public contracts at one moment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct RegionSummary {
    /// The region.
    pub(crate) region_id: i32,
    /// The moment the summary describes ("now" for the expiry count).
    pub(crate) computed_at: Timestamp,
    /// All contracts of the region.
    pub(crate) contracts: usize,
    /// Counts and ISK totals by type.
    pub(crate) by_type: TypeBreakdown,
    /// The [`TOP_ITEM_EXCHANGES`] most expensive item exchanges (with a price), by price
    /// descending, then contract id ascending.
    pub(crate) top_item_exchanges: Vec<TopContract>,
    /// Contracts with `computed_at < date_expired <= computed_at + 24h` (contracts already
    /// expired at `computed_at` are not counted).
    pub(crate) expiring_within_24h: usize,
}

/// Summarizes the contracts of `region_id` as of `now` (pure: the same input gives the same
/// summary, whatever the clock says).
pub(crate) fn summarize(region_id: i32, contracts: &[Contract], now: Timestamp) -> RegionSummary {
    let mut by_type = TypeBreakdown::default();
    let mut expiring_within_24h = 0;
    let horizon = now.0.saturating_add(EXPIRY_WINDOW_SECS);
    for contract in contracts {
        let totals = by_type.get_mut(contract.kind);
        totals.count += 1;
        totals.isk_total += contract.isk_value();
        if now.0 < contract.date_expired.0 && contract.date_expired.0 <= horizon {
            expiring_within_24h += 1;
        }
    }

    let mut ranked: Vec<(&Contract, f64)> = contracts
        .iter()
        .filter(|c| c.kind == ContractType::ItemExchange)
        .filter_map(|c| c.price.map(|price| (c, price)))
        .collect();
    ranked.sort_by(|(a, pa), (b, pb)| pb.total_cmp(pa).then_with(|| a.contract_id.cmp(&b.contract_id)));
    let top_item_exchanges = ranked
        .into_iter()
        .take(TOP_ITEM_EXCHANGES)
        .map(|(c, price)| TopContract {
            contract_id: c.contract_id,
            price,
            title: c.title.clone().unwrap_or_default(),
            volume: c.volume,
            start_location_id: c.start_location_id,
            date_expired: c.date_expired,
        })
        .collect();

    RegionSummary {
        region_id,
        computed_at: now,
        contracts: contracts.len(),
        by_type,
        top_item_exchanges,
        expiring_within_24h,
    }
}

/// A UTC instant with one-second precision, as unix seconds.
///
/// Serialized as RFC 3339 `YYYY-MM-DDTHH:MM:SSZ`, the form ESI uses; parsing also tolerates
/// fractional seconds (dropped), a lowercase `t`/`z` and a numeric `+HH:MM`/`-HH:MM` offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub(crate) struct Timestamp(pub(crate) i64);

/// Why a string is not a timestamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TimestampError {
    input: String,
    expected: &'static str,
}

impl fmt::Display for TimestampError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid {} timestamp: {:?}", self.expected, self.input)
    }
}

impl std::error::Error for TimestampError {}

const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];

impl Timestamp {
    /// The current time of the system clock (0 if the clock is before 1970).
    pub(crate) fn now() -> Self {
        let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        Self(i64::try_from(secs).unwrap_or(i64::MAX))
    }

    /// This instant plus `secs` seconds (saturating).
    pub(crate) const fn plus_seconds(self, secs: i64) -> Self {
        Self(self.0.saturating_add(secs))
    }

    /// Parses RFC 3339 (`2026-11-20T11:32:05Z`, `2026-11-20T11:32:05.123Z`,
    /// `2026-11-20T13:32:05+02:00`).
    pub(crate) fn parse_rfc3339(input: &str) -> Result<Self, TimestampError> {
        let err = || TimestampError { input: input.to_owned(), expected: "RFC 3339" };
        let b = input.as_bytes();
        if b.len() < 20
            || b[4] != b'-'
            || b[7] != b'-'
            || !matches!(b[10], b'T' | b't')
            || b[13] != b':'
            || b[16] != b':'
        {
            return Err(err());
        }
        let year = digits(&b[0..4]).ok_or_else(err)?;
        let month = digits(&b[5..7]).ok_or_else(err)?;
        let day = digits(&b[8..10]).ok_or_else(err)?;
        let hour = digits(&b[11..13]).ok_or_else(err)?;
        let minute = digits(&b[14..16]).ok_or_else(err)?;
        let second = digits(&b[17..19]).ok_or_else(err)?;
        let mut rest = &b[19..];
        if let [b'.', tail @ ..] = rest {
            let n = tail.iter().take_while(|c| c.is_ascii_digit()).count();
            if n == 0 {
                return Err(err());
            }
            rest = &tail[n..];
        }
        let offset = match rest {
            [b'Z' | b'z'] => 0,
            [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
                let oh = digits(&[*h1, *h2]).ok_or_else(err)?;
                let om = digits(&[*m1, *m2]).ok_or_else(err)?;
                if oh > 23 || om > 59 {
                    return Err(err());
                }
                let secs = oh * 3600 + om * 60;
                if *sign == b'+' { secs } else { -secs }
            }
            _ => return Err(err()),
        };
        let civil = civil_to_unix(year, month, day, hour, minute, second).ok_or_else(err)?;
        Ok(Self(civil - offset))
    }

    /// Parses an HTTP-date in its preferred IMF-fixdate form (`Fri, 20 Nov 2026 12:00:00 GMT`),
    /// the form ESI sends in `Expires` and `Last-Modified`. The weekday is not checked.
    pub(crate) fn parse_http_date(input: &str) -> Result<Self, TimestampError> {
        let err = || TimestampError { input: input.to_owned(), expected: "HTTP-date" };
        let b = input.as_bytes();
        if b.len() != 29
            || &b[3..5] != b", "
            || b[7] != b' '
            || b[11] != b' '
            || b[16] != b' '
            || b[19] != b':'
            || b[22] != b':'
            || &b[25..] != b" GMT"
        {
            return Err(err());
        }
        let day = digits(&b[5..7]).ok_or_else(err)?;
        let month = MONTHS.iter().position(|m| m.as_bytes() == &b[8..11]).ok_or_else(err)?;
        let year = digits(&b[12..16]).ok_or_else(err)?;
        let hour = digits(&b[17..19]).ok_or_else(err)?;
        let minute = digits(&b[20..22]).ok_or_else(err)?;
        let second = digits(&b[23..25]).ok_or_else(err)?;
        let month = i64::try_from(month).map_err(|_| err())? + 1;
        civil_to_unix(year, month, day, hour, minute, second).map(Self).ok_or_else(err)
    }

    /// Formats as an IMF-fixdate HTTP-date (`Fri, 20 Nov 2026 12:00:00 GMT`).
    pub(crate) fn to_http_date(self) -> String {
        let (year, month, day, hour, minute, second) = unix_to_civil(self.0);
        let weekday = WEEKDAYS[usize::try_from(self.0.div_euclid(86_400).rem_euclid(7)).unwrap_or(0)];
        let month = MONTHS[usize::try_from(month - 1).unwrap_or(0)];
        format!("{weekday}, {day:02} {month} {year:04} {hour:02}:{minute:02}:{second:02} GMT")
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (year, month, day, hour, minute, second) = unix_to_civil(self.0);
        write!(f, "{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}Z")
    }
}

impl FromStr for Timestamp {
    type Err = TimestampError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse_rfc3339(s)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Timestamp;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an RFC 3339 timestamp such as 2026-11-20T11:32:05Z")
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Timestamp, E> {
                Timestamp::parse_rfc3339(v).map_err(E::custom)
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

/// The value of a run of ASCII digits, `None` if any byte is not a digit.
fn digits(bytes: &[u8]) -> Option<i64> {
    bytes.iter().try_fold(0_i64, |acc, &c| c.is_ascii_digit().then(|| acc * 10 + i64::from(c - b'0')))
}

const fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

const fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
const fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Unix seconds of a validated civil UTC time (second 60, a leap second, is accepted and lands
/// on the next minute).
fn civil_to_unix(year: i64, month: i64, day: i64, hour: i64, minute: i64, second: i64) -> Option<i64> {
    let valid = (1..=12).contains(&month)
        && (1..=days_in_month(year, month)).contains(&day)
        && (0..=23).contains(&hour)
        && (0..=59).contains(&minute)
        && (0..=60).contains(&second);
    valid.then(|| days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second)
}

/// `(year, month, day, hour, minute, second)` of unix seconds (H. Hinnant's `civil_from_days`).
const fn unix_to_civil(secs: i64) -> (i64, i64, i64, i64, i64, i64) {
    let days = secs.div_euclid(86_400);
    let tod = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + if month <= 2 { 1 } else { 0 };
    (year, month, day, tod / 3600, tod % 3600 / 60, tod % 60)
}
