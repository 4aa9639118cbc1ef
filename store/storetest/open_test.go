package storetest

import (
	"context"

	"sluice/store/postgres"
	"sluice/store/sqlstore"
)

func openPostgresURL(u string) (*sqlstore.DB, error) {
	return postgres.Open(context.Background(), u, 4)
}
