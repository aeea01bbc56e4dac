package app

import (
	"context"
	"log/slog"

	"github.com/repute-mail/repute/internal/config"
	"github.com/repute-mail/repute/internal/obs"
	"github.com/repute-mail/repute/internal/store"
	"github.com/repute-mail/repute/internal/submit"
)

// NewSubmitter builds the one path of our own users' mail (internal/submit) on an open
// store: DKIM keys from the store, List-Unsubscribe fields on the mail of
// bounce.bulk_senders. The server adds its scheduler and IMAP hooks; `repute sendmail`
// uses it as it is.
func NewSubmitter(ctx context.Context, cfg config.Config, db *store.DB, events *obs.EventLog, log *slog.Logger) (*submit.Submitter, error) {
	key, err := db.Secret(ctx, "unsubscribe")
	if err != nil {
		return nil, err
	}
	base := cfg.Bounce.UnsubscribeURL
	if base == "" {
		base = "https://" + cfg.Hostname
	}
	return &submit.Submitter{
		Store:    db,
		Signer:   submit.NewSigner(db),
		Bulk:     &submit.Bulk{Key: key, BaseURL: base, Senders: lowerSet(cfg.Bounce.BulkSenders)},
		Hostname: cfg.Hostname,
		MaxSize:  cfg.SMTP.MaxMessageSize,
		Events:   events,
		Logger:   log,
	}, nil
}
