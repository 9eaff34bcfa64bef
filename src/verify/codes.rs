//! MQTT 5 reason codes: the numbers rumqttc's enums stand for, and their names in the specification.

use rumqttc::v5::mqttbytes::v5::{
    ConnectReturnCode, DisconnectReasonCode, PubAckReason, SubscribeReasonCode,
};
use rumqttc::v5::mqttbytes::QoS;

/// Reason code 135, Not authorized: what AWS IoT answers for an action its policies deny.
pub const NOT_AUTHORIZED: u8 = 0x87;

/// Success codes are below 0x80.
pub fn is_success(code: u8) -> bool {
    code < 0x80
}

/// The name of a reason code (MQTT 5, section 2.4).
pub fn name(code: u8) -> &'static str {
    match code {
        0x00 => "Success",
        0x01 => "Granted QoS 1",
        0x02 => "Granted QoS 2",
        0x04 => "Disconnect with Will Message",
        0x10 => "No matching subscribers",
        0x80 => "Unspecified error",
        0x81 => "Malformed Packet",
        0x82 => "Protocol Error",
        0x83 => "Implementation specific error",
        0x84 => "Unsupported Protocol Version",
        0x85 => "Client Identifier not valid",
        0x86 => "Bad User Name or Password",
        0x87 => "Not authorized",
        0x88 => "Server unavailable",
        0x89 => "Server busy",
        0x8A => "Banned",
        0x8B => "Server shutting down",
        0x8C => "Bad authentication method",
        0x8D => "Keep Alive timeout",
        0x8E => "Session taken over",
        0x8F => "Topic Filter invalid",
        0x90 => "Topic Name invalid",
        0x91 => "Packet Identifier in use",
        0x93 => "Receive Maximum exceeded",
        0x94 => "Topic Alias invalid",
        0x95 => "Packet too large",
        0x96 => "Message rate too high",
        0x97 => "Quota exceeded",
        0x98 => "Administrative action",
        0x99 => "Payload format invalid",
        0x9A => "Retain not supported",
        0x9B => "QoS not supported",
        0x9C => "Use another server",
        0x9D => "Server moved",
        0x9E => "Shared Subscriptions not supported",
        0x9F => "Connection rate exceeded",
        0xA0 => "Maximum connect time",
        0xA1 => "Subscription Identifiers not supported",
        0xA2 => "Wildcard Subscriptions not supported",
        _ => "unknown reason code",
    }
}

pub fn connack(code: &ConnectReturnCode) -> u8 {
    use ConnectReturnCode::*;
    match code {
        Success => 0x00,
        RefusedProtocolVersion | UnsupportedProtocolVersion => 0x84,
        BadClientId | ClientIdentifierNotValid => 0x85,
        ServiceUnavailable | ServerUnavailable => 0x88,
        UnspecifiedError => 0x80,
        MalformedPacket => 0x81,
        ProtocolError => 0x82,
        ImplementationSpecificError => 0x83,
        BadUserNamePassword => 0x86,
        NotAuthorized => 0x87,
        ServerBusy => 0x89,
        Banned => 0x8A,
        BadAuthenticationMethod => 0x8C,
        TopicNameInvalid => 0x90,
        PacketTooLarge => 0x95,
        QuotaExceeded => 0x97,
        PayloadFormatInvalid => 0x99,
        RetainNotSupported => 0x9A,
        QoSNotSupported => 0x9B,
        UseAnotherServer => 0x9C,
        ServerMoved => 0x9D,
        ConnectionRateExceeded => 0x9F,
    }
}

pub fn puback(reason: &PubAckReason) -> u8 {
    use PubAckReason::*;
    match reason {
        Success => 0x00,
        NoMatchingSubscribers => 0x10,
        UnspecifiedError => 0x80,
        ImplementationSpecificError => 0x83,
        NotAuthorized => 0x87,
        TopicNameInvalid => 0x90,
        PacketIdentifierInUse => 0x91,
        QuotaExceeded => 0x97,
        PayloadFormatInvalid => 0x99,
    }
}

pub fn suback(code: &SubscribeReasonCode) -> u8 {
    use SubscribeReasonCode::*;
    match code {
        Success(QoS::AtMostOnce) => 0x00,
        Success(QoS::AtLeastOnce) => 0x01,
        Success(QoS::ExactlyOnce) => 0x02,
        Failure | Unspecified => 0x80,
        ImplementationSpecific => 0x83,
        NotAuthorized => 0x87,
        TopicFilterInvalid => 0x8F,
        PkidInUse => 0x91,
        QuotaExceeded => 0x97,
        SharedSubscriptionsNotSupported => 0x9E,
        SubscriptionIdNotSupported => 0xA1,
        WildcardSubscriptionsNotSupported => 0xA2,
    }
}

pub fn disconnect(code: &DisconnectReasonCode) -> u8 {
    *code as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_authorized_is_135_everywhere() {
        assert_eq!(NOT_AUTHORIZED, 135);
        assert_eq!(connack(&ConnectReturnCode::NotAuthorized), 135);
        assert_eq!(puback(&PubAckReason::NotAuthorized), 135);
        assert_eq!(suback(&SubscribeReasonCode::NotAuthorized), 135);
        assert_eq!(disconnect(&DisconnectReasonCode::NotAuthorized), 135);
        assert_eq!(name(135), "Not authorized");
        assert!(is_success(puback(&PubAckReason::NoMatchingSubscribers)));
        assert!(!is_success(135));
    }
}
