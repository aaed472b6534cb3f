// Package all links in every built-in plugin; the binary imports it for
// its side effects. Add a line here to compile a new plugin in.
package all

import (
	_ "ferry/plugins/hexdump"
	_ "ferry/plugins/log"
)
