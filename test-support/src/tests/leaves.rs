//! Leaf specs: the server and client shorthands, every spec field, EKU, validity windows, expired
//! and future authorities.

use super::*;

#[test]
fn server_shorthand_sets_sans_cn_and_server_auth() {
    let ca = Authority::root("CA");
    let issued = ca.server(&["localhost", "127.0.0.1", "*.example.test", "::1"]);
    let cert = parse(&issued.cert_der);
    assert_eq!(cn(&cert), "localhost");
    assert_eq!(
        sans(&cert),
        [
            "DNS:localhost",
            "DNS:*.example.test",
            "IP:127.0.0.1",
            "IP:::1"
        ]
    );
    assert_eq!(eku(&cert), Some((true, false)));
    assert_eq!(ca_flag(&cert), Some(false));
    assert_eq!(days_from_now(&cert), (-1, 365));
    assert_eq!(spki_of_key(&issued.key_pem), cert.public_key().raw);
}

#[test]
fn client_shorthand_sets_cn_and_client_auth_only() {
    let ca = Authority::root("CA");
    let issued = ca.client("ExampleClient");
    let cert = parse(&issued.cert_der);
    assert_eq!(cn(&cert), "ExampleClient");
    assert!(sans(&cert).is_empty());
    assert_eq!(eku(&cert), Some((false, true)));
}

#[test]
fn spec_fields_all_reach_the_certificate() {
    let ca = Authority::root("CA");
    let spec = LeafSpec::new("svc")
        .with_organization("Example Org")
        .with_organizational_unit("Edge")
        .with_country("DE")
        .with_dns_name("svc.test")
        .with_ip_address(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)))
        .with_ip_address(IpAddr::V6(Ipv6Addr::LOCALHOST))
        .with_uri("spiffe://example.test/ns/default/sa/svc")
        .with_email("ops@example.test")
        .with_eku([Eku::ServerAuth, Eku::ClientAuth])
        .with_serial(4242);
    let issued = ca.issue(&spec);
    let cert = parse(&issued.cert_der);
    let subject = cert.subject();
    let only = |mut values: Box<dyn Iterator<Item = &_> + '_>| {
        let value: &x509_parser::x509::AttributeTypeAndValue<'_> = values.next().unwrap();
        assert!(values.next().is_none());
        value.as_str().unwrap().to_owned()
    };
    assert_eq!(only(Box::new(subject.iter_organization())), "Example Org");
    assert_eq!(only(Box::new(subject.iter_organizational_unit())), "Edge");
    assert_eq!(only(Box::new(subject.iter_country())), "DE");
    assert_eq!(
        sans(&cert),
        [
            "DNS:svc.test",
            "IP:10.0.0.1",
            "IP:::1",
            "URI:spiffe://example.test/ns/default/sa/svc",
            "email:ops@example.test",
        ]
    );
    assert_eq!(eku(&cert), Some((true, true)));
    assert_eq!(cert.raw_serial(), [0x10, 0x92]);
}

#[test]
fn empty_eku_means_no_extension() {
    let ca = Authority::root("CA");
    let cert_der = ca.issue(&LeafSpec::client("x").with_eku([])).cert_der;
    assert_eq!(eku(&parse(&cert_der)), None);
}

#[test]
fn validity_windows_are_relative_to_now() {
    let ca = Authority::root("CA");
    let days = |validity| {
        let issued = ca.issue(&LeafSpec::client("x").with_validity(validity));
        days_from_now(&parse(&issued.cert_der))
    };
    assert_eq!(days(Validity::Current), (-1, 365));
    assert_eq!(days(Validity::Expired), (-366, -1));
    assert_eq!(days(Validity::NotYetValid), (1, 366));

    let start = SystemTime::now() - Duration::from_secs(60);
    let end = SystemTime::now() + Duration::from_secs(3600);
    let issued = ca.issue(&LeafSpec::client("x").with_validity(Validity::Window {
        not_before: start,
        not_after: end,
    }));
    let cert = parse(&issued.cert_der);
    let secs =
        |t: SystemTime| i64::try_from(t.duration_since(UNIX_EPOCH).unwrap().as_secs()).unwrap();
    assert_eq!(cert.validity().not_before.timestamp(), secs(start));
    assert_eq!(cert.validity().not_after.timestamp(), secs(end));
}

#[test]
fn expired_and_future_authorities_can_be_made() {
    let root = Authority::root_from(&LeafSpec::ca("Old Root").with_validity(Validity::Expired));
    assert_eq!(days_from_now(&parse(&root.cert_der())), (-366, -1));
    let intermediate =
        root.subordinate(&LeafSpec::ca("Future CA").with_validity(Validity::NotYetValid));
    let der = intermediate.cert_der();
    let cert = parse(&der);
    assert_eq!(days_from_now(&cert), (1, 366));
    assert_eq!(ca_flag(&cert), Some(true));
}
