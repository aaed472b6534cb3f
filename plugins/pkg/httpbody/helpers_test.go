package httpbody

import (
	"compress/flate"
	"io"
)

func newRawDeflate(w io.Writer) io.WriteCloser {
	fw, _ := flate.NewWriter(w, flate.DefaultCompression)
	return fw
}
