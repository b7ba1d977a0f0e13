package dnsserver

import (
	"encoding/binary"
	"net/netip"
)

// fastPath answers the common query, an A lookup of a `.mesh` name that has
// a VIP, straight from the raw packet: the question is copied, the answer
// is a pre-packed record, nothing is allocated. Anything else (other types,
// misses, EDNS options, odd headers, compression in the question) goes to
// the miekg/dns handler, which gives the same answer for what the fast path
// does answer (TestFastPathMatchesSlowPath checks that).
type fastPath struct {
	name [256]byte
	key  [2 * 256]byte
	out  [512]byte
}

func (f *fastPath) answer(h *Handler, req []byte, from netip.Addr) ([]byte, bool) {
	if len(req) < 17 || len(req) > 512 {
		return nil, false
	}
	// Header: a plain query (QR=0, opcode QUERY), one question, at most one
	// additional record (OPT).
	if req[2]&0xF8 != 0 || binary.BigEndian.Uint16(req[4:]) != 1 || binary.BigEndian.Uint16(req[6:]) != 0 ||
		binary.BigEndian.Uint16(req[8:]) != 0 || binary.BigEndian.Uint16(req[10:]) > 1 {
		return nil, false
	}
	// The question name, lowercased into f.name as dotted labels.
	off, n, labels, last := 12, 0, 0, 0
	for {
		if off >= len(req) {
			return nil, false
		}
		l := int(req[off])
		off++
		if l == 0 {
			break
		}
		if l > 63 || off+l > len(req) || n+l+1 > 255 {
			return nil, false
		}
		if labels > 0 {
			f.name[n] = '.'
			n++
		}
		last = n
		for _, c := range req[off : off+l] {
			switch {
			case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '_':
			case c >= 'A' && c <= 'Z':
				c += 'a' - 'A'
			default:
				return nil, false
			}
			f.name[n] = c
			n++
		}
		off += l
		labels++
	}
	if off+4 > len(req) || binary.BigEndian.Uint16(req[off:]) != 1 || binary.BigEndian.Uint16(req[off+2:]) != 1 {
		return nil, false // not A, not IN
	}
	off += 4
	qend := off
	hasOpt, do := false, byte(0)
	if req[11] == 1 {
		// OPT: root name, type 41, version 0, no extended rcode, no options.
		if off+11 != len(req) || req[off] != 0 || binary.BigEndian.Uint16(req[off+1:]) != 41 ||
			req[off+5] != 0 || req[off+6] != 0 || binary.BigEndian.Uint16(req[off+9:]) != 0 {
			return nil, false
		}
		hasOpt, do = true, req[off+7]&0x80
		off += 11
	}
	if off != len(req) || labels == 0 || string(f.name[last:n]) != "mesh" {
		return nil, false
	}
	rel := f.name[:0]
	if labels > 1 {
		rel = f.name[:last-1]
	}
	a, st := h.t.resolve(h.t.load(), rel, labels-1, from, f.key[:])
	if st != hit {
		return nil, false
	}
	out := append(f.out[:0], req[:qend]...)
	out[2] = 0x80 | 0x04 | req[2]&0x01 // QR, AA, RD copied
	out[3] = req[3] & 0x10             // CD copied, rcode NOERROR
	if h.ra {
		out[3] |= 0x80
	}
	out[6], out[7] = 0, 1 // ANCOUNT
	out[8], out[9] = 0, 0
	out[10], out[11] = 0, 0
	out = append(out, a[:]...)
	if hasOpt {
		out[11] = 1
		out = append(out, 0, 0, 41, byte(h.o.EDNSSize>>8), byte(h.o.EDNSSize), 0, 0, do, 0, 0, 0)
	}
	return out, true
}
