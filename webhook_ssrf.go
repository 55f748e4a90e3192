package main

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
)

// Where webhooks may be sent. A URL names a host; the address it resolves
// to is what matters, and it can change after the URL was saved (DNS
// rebinding), so the address is checked at every connection, after the
// resolver has answered and before the connection is made
// (net.Dialer.Control). A literal address in a URL is also refused when
// it is saved, so the admin hears of it at once.

// destinationPolicy says which addresses webhooks may connect to.
type destinationPolicy struct {
	// allowPrivate lets every address through (WEBHOOK_ALLOW_PRIVATE):
	// for tests and receivers on an internal network.
	allowPrivate bool
	// allowed are networks let through although internal
	// (WEBHOOK_ALLOWED_NETWORKS).
	allowed []netip.Prefix
}

// internalNetworks are refused besides what netip classifies as loopback,
// private, link-local, multicast or unspecified: shared address space
// (RFC 6598), "this network", IETF protocol assignments, benchmarking,
// reserved, broadcast, NAT64 (which can reach any IPv4 address, internal
// ones included), and IPv6 site-local (deprecated, still routed inside
// some networks).
var internalNetworks = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("100.64.0.0/10"),
	netip.MustParsePrefix("192.0.0.0/24"),
	netip.MustParsePrefix("198.18.0.0/15"),
	netip.MustParsePrefix("240.0.0.0/4"),
	netip.MustParsePrefix("64:ff9b::/96"),
	netip.MustParsePrefix("64:ff9b:1::/48"),
	netip.MustParsePrefix("fec0::/10"),
}

// errDestinationRefused: a webhook's host resolved to an address the
// policy refuses.
var errDestinationRefused = errors.New("destination refused")

// internalKind names what kind of internal address ip is, or "" when it
// is a public one.
func internalKind(ip netip.Addr) string {
	ip = ip.Unmap()
	switch {
	case ip.IsLoopback():
		return "loopback"
	case ip.IsPrivate():
		return "private"
	case ip.IsLinkLocalUnicast():
		return "link-local (cloud metadata lives there)"
	case ip.IsMulticast(), ip.IsLinkLocalMulticast(), ip.IsInterfaceLocalMulticast():
		return "multicast"
	case ip.IsUnspecified():
		return "unspecified"
	}
	for _, p := range internalNetworks {
		if p.Contains(ip) {
			return "reserved"
		}
	}
	return ""
}

// check returns nil when webhooks may connect to ip.
func (p destinationPolicy) check(ip netip.Addr) error {
	kind := internalKind(ip)
	if kind == "" || p.allowPrivate {
		return nil
	}
	for _, prefix := range p.allowed {
		if prefix.Contains(ip.Unmap()) {
			return nil
		}
	}
	return fmt.Errorf("%w: %s is %s", errDestinationRefused, ip.Unmap(), kind)
}

// control is the dialer's Control: it runs for every connection, with
// the address the host resolved to, and refuses what check refuses.
func (p destinationPolicy) control(_, address string, _ syscall.RawConn) error {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return fmt.Errorf("%w: %s", errDestinationRefused, address)
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return fmt.Errorf("%w: %s is not an address", errDestinationRefused, host)
	}
	return p.check(ip)
}

// maxWebhookURL is the longest URL an endpoint may have.
const maxWebhookURL = 2048

// checkWebhookURL says what is wrong with raw as a webhook's URL, or "":
// absolute, https (or http when allowHTTP), a host, no credentials or
// fragment, and no literal address the policy refuses.
func checkWebhookURL(raw string, allowHTTP bool, policy destinationPolicy) string {
	u, err := url.Parse(raw)
	switch {
	case len(raw) > maxWebhookURL:
		return fmt.Sprintf("must be at most %d characters", maxWebhookURL)
	case err != nil || !u.IsAbs() || u.Host == "" || u.Opaque != "":
		return "must be an absolute URL, such as https://example.com/hooks"
	case u.Scheme != "https" && !(u.Scheme == "http" && allowHTTP):
		if allowHTTP {
			return "must be an https or http URL"
		}
		return "must be an https URL (http is refused unless WEBHOOK_ALLOW_HTTP is set)"
	case u.User != nil:
		return "must not hold a user name or password: the signature authenticates the sender"
	case u.Fragment != "" || strings.Contains(raw, "#"):
		return "must not have a fragment"
	case u.Hostname() == "":
		return "must name a host"
	}
	if ip, err := netip.ParseAddr(u.Hostname()); err == nil {
		if err := policy.check(ip); err != nil {
			return "must not point to an internal address: " + strings.TrimPrefix(err.Error(), errDestinationRefused.Error()+": ")
		}
	}
	return ""
}
