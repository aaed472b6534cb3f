package plugins

// Carrier is implemented by a plugin whose state should outlive a reload,
// such as connlimit's counts of open channels: without it a reload (SIGHUP
// or the admin reload) would give every client a fresh allowance.
//
// On a reload, before the new configuration serves anyone, ferry calls
// CarryFrom on each new instance that implements Carrier, with the old
// instance of the same name, when both have the same type and the same
// settings: their tables decode to equal values (comments, layout and key
// order do not matter) and the configuration file is in the same
// directory. Where the settings changed, the new instance starts afresh,
// unless it is a SettingsCarrier.
// A reload that fails after CarryFrom discards the new instance; the old
// one goes on as before.
//
// The old instance still serves the channels accepted before the reload
// until they end, and its OnClose runs for them: the state must therefore
// be shared between the two instances, not copied, so that a channel
// closing after the reload gives back to the table the new instance
// checks. The old instance's Close (io.Closer) runs once its last channel
// has ended, while the new instance goes on with the shared state: it
// must not tear that state down. CarryFrom runs once, before the new instance sees any channel;
// old may be of another Go type (a plugin must check), and CarryFrom must
// leave the new instance working on its own state when it cannot adopt
// old's.
type Carrier interface {
	CarryFrom(old Plugin)
}

// SettingsCarrier is a Carrier whose state stays right under other
// settings, such as connlimit's counts of open channels, which do not
// depend on the limits they are checked against. ferry calls its
// CarryFrom whenever the old instance has the same name and type (and
// the configuration file is in the same directory), whether the settings
// changed or not; the new instance checks the adopted state against its
// own settings from then on. The rest of Carrier's contract holds.
type SettingsCarrier interface {
	Carrier
	// CarriesAcrossSettings marks the type; ferry never calls it.
	CarriesAcrossSettings()
}
