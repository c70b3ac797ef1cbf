package geoip_test

import (
	"net/netip"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/auditlog/auditlog/geoip"
	"github.com/auditlog/auditlog/internal/geoiptest"
	"github.com/auditlog/auditlog/service"
)

func TestLocate(t *testing.T) {
	t.Parallel()
	path := geoiptest.Write(t, map[string]service.Location{
		"192.0.2.0/24":    {Country: "FR", Region: "Île-de-France", City: "Paris"},
		"2001:db8::/32":   {Country: "NL"},
		"198.51.100.0/24": {Country: "DE", City: "Berlin"},
	})
	db, err := geoip.Open(path)
	require.NoError(t, err)
	defer db.Close()
	for ip, want := range map[string]service.Location{
		"192.0.2.7":        {Country: "FR", Region: "Île-de-France", City: "Paris"},
		"::ffff:192.0.2.8": {Country: "FR", Region: "Île-de-France", City: "Paris"},
		"2001:db8:1::5":    {Country: "NL"},
		"198.51.100.1":     {Country: "DE", City: "Berlin"},
	} {
		got, ok := db.Locate(netip.MustParseAddr(ip))
		require.True(t, ok, ip)
		require.Equal(t, want, got, ip)
	}
	_, ok := db.Locate(netip.MustParseAddr("203.0.113.1"))
	require.False(t, ok)
	_, err = geoip.Open("/nonexistent.mmdb")
	require.Error(t, err)
}
