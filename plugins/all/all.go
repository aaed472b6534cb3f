// Package all links in every built-in plugin; the binary imports it for
// its side effects. Add a line here to compile a new plugin in.
package all

import (
	_ "ferry/plugins/acl"
	_ "ferry/plugins/auth"
	_ "ferry/plugins/capture"
	_ "ferry/plugins/connlimit"
	_ "ferry/plugins/headers"
	_ "ferry/plugins/hexdump"
	_ "ferry/plugins/log"
	_ "ferry/plugins/mitm"
	_ "ferry/plugins/quota"
	_ "ferry/plugins/ratelimit"
	_ "ferry/plugins/replace"
)
