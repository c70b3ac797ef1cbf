// Package geoip locates IP addresses with a MaxMind database (.mmdb in the
// GeoIP2/GeoLite2 City or Country layout) for service.SignalOpts.Locator:
// events that carry an IP but no location get one, and new-location
// decisions compare countries.
package geoip

import (
	"fmt"
	"net/netip"

	"github.com/oschwald/maxminddb-golang/v2"

	"github.com/auditlog/auditlog/service"
)

// DB is an open MaxMind database. It is safe for concurrent use.
type DB struct {
	r *maxminddb.Reader
}

// Open opens the .mmdb file at path.
func Open(path string) (*DB, error) {
	r, err := maxminddb.Open(path)
	if err != nil {
		return nil, fmt.Errorf("geoip: %w", err)
	}
	return &DB{r: r}, nil
}

// Close releases the database.
func (d *DB) Close() error { return d.r.Close() }

// record is the part of a City or Country record that is read.
type record struct {
	Country struct {
		ISOCode string `maxminddb:"iso_code"`
	} `maxminddb:"country"`
	Subdivisions []struct {
		Names map[string]string `maxminddb:"names"`
	} `maxminddb:"subdivisions"`
	City struct {
		Names map[string]string `maxminddb:"names"`
	} `maxminddb:"city"`
}

// Locate implements service.Locator: the country code, the first
// subdivision and the city, in English.
func (d *DB) Locate(ip netip.Addr) (service.Location, bool) {
	res := d.r.Lookup(ip.Unmap())
	if !res.Found() {
		return service.Location{}, false
	}
	var rec record
	if err := res.Decode(&rec); err != nil || rec.Country.ISOCode == "" {
		return service.Location{}, false
	}
	loc := service.Location{Country: rec.Country.ISOCode, City: rec.City.Names["en"]}
	if len(rec.Subdivisions) > 0 {
		loc.Region = rec.Subdivisions[0].Names["en"]
	}
	return loc, true
}
