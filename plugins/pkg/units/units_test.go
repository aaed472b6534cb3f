package units

import (
	"strings"
	"testing"
	"time"
)

func TestParseSize(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    Size
		wantErr string
	}{
		{name: "bytes", in: "4096", want: 4096},
		{name: "B", in: "512B", want: 512},
		{name: "KiB", in: "32KiB", want: 32 << 10},
		{name: "KB", in: "64KB", want: 64000},
		{name: "MiB", in: "1MiB", want: 1 << 20},
		{name: "MB", in: "1MB", want: 1000000},
		{name: "GiB", in: "2GiB", want: 2 << 30},
		{name: "GB", in: "1GB", want: 1e9},
		{name: "K", in: "4K", want: 4096},
		{name: "M", in: "3M", want: 3 << 20},
		{name: "G", in: "1G", want: 1 << 30},
		{name: "lower case", in: "32kib", want: 32 << 10},
		{name: "space before unit", in: "32 KiB", want: 32 << 10},
		{name: "zero", in: "0", want: 0},
		{name: "max int64", in: "9223372036854775807", want: 1<<63 - 1},
		{name: "empty", in: "", wantErr: "want a whole number"},
		{name: "unit only", in: "KiB", wantErr: "want a whole number"},
		{name: "negative", in: "-1KiB", wantErr: "must not be negative"},
		{name: "fraction", in: "1.5MiB", wantErr: "whole number"},
		{name: "unknown unit", in: "10XB", wantErr: `unknown unit "XB"`},
		{name: "bits are not bytes", in: "10Mbit", wantErr: "unknown unit"},
		{name: "overflow number", in: "99999999999999999999", wantErr: "too large"},
		{name: "overflow unit", in: "9000000000GiB", wantErr: "too large"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got Size
			err := got.UnmarshalText([]byte(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("UnmarshalText(%q): got error %v, want one containing %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("UnmarshalText(%q): got error %v", tt.in, err)
			}
			if got != tt.want {
				t.Fatalf("UnmarshalText(%q): got %d, want %d", tt.in, got, tt.want)
			}
		})
	}
}

func TestSizeString(t *testing.T) {
	tests := []struct {
		name string
		in   Size
		want string
	}{
		{name: "zero", in: 0, want: "0B"},
		{name: "bytes", in: 1000, want: "1000B"},
		{name: "KiB", in: 32 * KiB, want: "32KiB"},
		{name: "MiB", in: 16 * MiB, want: "16MiB"},
		{name: "GiB", in: 3 * GiB, want: "3GiB"},
		{name: "not whole KiB", in: 1536 + 1, want: "1537B"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := tt.in.MarshalText()
			if err != nil || string(b) != tt.want {
				t.Fatalf("MarshalText(%d): got %q, %v, want %q", int64(tt.in), b, err, tt.want)
			}
			var back Size
			if err := back.UnmarshalText(b); err != nil || back != tt.in {
				t.Fatalf("round trip of %q: got %d, %v, want %d", b, back, err, tt.in)
			}
		})
	}
}

func TestDuration(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    time.Duration
		wantErr string
	}{
		{name: "seconds", in: "10s", want: 10 * time.Second},
		{name: "compound", in: "1m30s", want: 90 * time.Second},
		{name: "millis", in: "250ms", want: 250 * time.Millisecond},
		{name: "zero", in: "0s", want: 0},
		{name: "bare zero", in: "0", want: 0},
		{name: "negative", in: "-5s", wantErr: "must not be negative"},
		{name: "no unit", in: "10", wantErr: `invalid duration "10"`},
		{name: "bad unit", in: "5x", wantErr: `invalid duration "5x"`},
		{name: "empty", in: "", wantErr: "invalid duration"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var d Duration
			err := d.UnmarshalText([]byte(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("UnmarshalText(%q): got error %v, want one containing %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil || d.D() != tt.want {
				t.Fatalf("UnmarshalText(%q): got %v, %v, want %v", tt.in, d.D(), err, tt.want)
			}
			b, _ := d.MarshalText()
			var back Duration
			if err := back.UnmarshalText(b); err != nil || back != d {
				t.Fatalf("round trip of %q: got %v, %v, want %v", b, back, err, d)
			}
		})
	}
}
