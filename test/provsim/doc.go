// Package provsim simulates the receiving side of the three largest mailbox providers,
// Gmail, Microsoft (Outlook.com and Microsoft 365) and Yahoo, for Repute's end-to-end
// tests and benchmarks of the deliverability engine.
//
// # Why
//
// No provider publishes its limits. A sender learns them only from the replies it gets:
// a deferral when it is too fast, a block when it keeps going anyway. The engine has to
// find each provider's limits by itself from those replies, and the only honest way to
// test that is against something that answers the way the providers do: the same codes,
// the same words, at the same step of the SMTP dialogue, and a block for a sender that
// ignores the deferrals. Tests must never contact the real providers, so this package is
// the closest safe stand-in: one small SMTP server per provider on a loopback address,
// with per-sender-IP limits the test chooses and counters the test can assert on.
//
// # What it simulates
//
// A [Server] listens on an address given by the caller (for example 127.0.0.31:2525) and
// behaves as the [Profile] says. Limits apply per sender IP, the client's source address
// as the server sees it, so a test can play several sending IPs by binding its client to
// different addresses of 127.0.0.0/8:
//
//   - concurrent connections (MaxConnections),
//   - messages per minute (RatePerMinute, a token bucket of Burst messages),
//   - optionally messages per connection (MaxMessagesPerConnection).
//
// Over a limit the server answers with the provider's real reply at the stage the
// provider uses (see [ReplyFor] for the texts):
//
//	provider   over the rate                  over the connection cap        block
//	google     421-4.7.28 at end of DATA,     421 4.7.0 at EHLO/HELO,        550-5.7.1 UnsolicitedIPError
//	           connection closed              connection closed              at end of DATA
//	microsoft  451 4.7.650 (S775) at RCPT     421 4.3.2 at the greeting,     550 5.7.1 (S3140) at MAIL,
//	                                          connection closed              connection closed
//	yahoo      421 4.7.0 [TSS04] at MAIL,     421 4.7.0 [TSS04] at the       553 5.7.2 [TSS09] at MAIL
//	           connection closed              greeting, connection closed
//
// A sender IP that keeps sending despite deferrals is blocked: more than BlockAfter
// deferrals within BlockWindow (by default 30 in one simulated minute) start a block of
// BlockFor (by default one simulated hour). While it lasts every transaction from that IP
// gets the block reply; the counters record the block and every transaction and
// connection the sender attempts after it has been told (TransactionsAfterBlock,
// ConnectionsAfterBlock), which is what an acceptance test checks: after the block reply,
// no further transaction to that provider from that IP. A sender with several connections
// open cannot stop the commands already on their way on the others, so what starts within
// Config.RaceGrace (100 ms) of the reply is counted apart, as racing it. When the block ends
// the IP starts afresh.
//
// # Time
//
// The server reads time from an injected clock (Config.Now; tests use a [ManualClock])
// and runs simulated time TimeScale times faster than that clock: with a scale of 60 a
// simulated minute (a rate window, a block window) passes in one second of the clock and
// a one-hour block in one minute, so a benchmark can run hours of sending in seconds.
// All Profile durations and rates are in simulated time; [IdealTime] converts back to
// clock time, the time a perfect sender would need, so a benchmark can check that the
// engine finishes within some factor of it.
//
// # What it does not simulate
//
// Reputation, content filtering, authentication (SPF, DKIM, DMARC results), recipient
// validity, per-recipient or per-domain limits, greylisting, network latency, and the
// providers' many other replies. Limits are fixed numbers the test sets, not learned
// from behaviour; the block is the only escalation. The SMTP server is deliberately small
// (no AUTH, no SMTPUTF8, no CHUNKING): it is a receiving MX for an MTA, not a general
// server. The reply texts are those of the providers' published documentation and of
// replies seen in the field; the per-connection message limit has no documented reply,
// so its text is the simulator's own.
package provsim
