// Package replace is a plugin that rewrites channel data: literal byte
// strings or regular expressions, client to upstream ("up", OnRead),
// upstream to client ("down", OnWrite) or both, for plaintext protocols;
// and, with body rules (scope = "body"), whole decoded HTTP bodies of
// chosen media types, plain and intercepted (body.go).
//
//	[[plugin]]
//	name = "rewrite"
//	type = "replace"
//	max_match = "4KiB"    # longest regexp match found across reads
//	flush_after = "50ms"  # quiet time before a held tail is sent
//
//	[[plugin.rule]]
//	direction = "down"
//	find = "Server: nginx"
//	replace = "Server: ferry"
//
//	[[plugin.rule]]
//	direction = "up"
//	regexp = 'User-Agent: [^\r\n]*'
//	replace = "User-Agent: ferry"
//
//	[[plugin.rule]]
//	scope = "body"            # whole response bodies, decoded
//	direction = "down"
//	content_type = ["text/*"]
//	find = "Hello"
//	replace = "Howdy"
//
// A match may span reads: each rule keeps, per channel and direction, the
// tail of what it has seen that could still begin a match (at most
// len(find)-1 bytes, or max_match-1 for a regexp) and sends the rest on.
// When the direction ends (OnReadEnd, OnWriteEnd: the sender closed its
// side, or a plain HTTP request or response was written), the held tail
// is rewritten as the end of the stream and goes out before the
// half-close, after everything else.
//
// When no bytes come for flush_after, the held tail is also rewritten as
// if the stream ended there and sent with Session.SendUpstream or
// SendClient, for interactive protocols whose other side waits for it.
// So that the flush can never overtake earlier output, the plugin then
// writes all of its output for a direction itself, under one lock:
// plugins after it in that direction do not see it. With flush_after =
// "0s" there is no timer and output, the end-of-stream tail included,
// passes through the plugins after this one (see README.md).
//
// Stream rules do not understand protocols: they do not fix Content-Length or
// chunk sizes after a change of length, decompress, or see inside TLS.
// For plain HTTP proxying each request and each response is a stream of
// its own, without the timer: its end releases the tail.
package replace
