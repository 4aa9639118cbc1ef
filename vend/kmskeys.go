package vend

import (
	"context"
	"encoding/binary"
	"fmt"

	"sluice/keys"
	"sluice/kms"
	"sluice/store"
	"sluice/sts"
	"sluice/voucher"
)

// KMSKeys is Keys over the key manager: STS decoder keys are computed by the
// vending key's PRF inside the KMS (DKGA04's HMAC, DKGA02's DES step), so the
// head-end never holds a vending key, and vouchers are signed by the
// hierarchy's signing keys.
type KMSKeys struct {
	KM kms.KeyManager
}

// DecoderKey derives an STS meter's decoder key.
func (k KMSKeys) DecoderKey(ctx context.Context, g store.SupplyGroup, krn int, id sts.KeyID, pan sts.PAN, base sts.BaseDate) ([]byte, error) {
	ea, err := sts.ParseEA(g.EA)
	if err != nil {
		return nil, err
	}
	ref := kms.KeyRef{Name: keys.STSVendingKey(int(id.SGC), krn)}
	switch g.DKGA {
	case "04":
		msg, err := sts.DKGA04Message(id, pan, base, ea)
		if err != nil {
			return nil, err
		}
		out, err := k.KM.PRF(ctx, ref, msg)
		if err != nil {
			return nil, fmt.Errorf("vending key %s: %w", ref.Name, err)
		}
		return out[:ea.KeySize()], nil
	case "02":
		cb, err := sts.ControlBlock(id)
		if err != nil {
			return nil, err
		}
		out, err := k.KM.PRF(ctx, ref, binary.BigEndian.AppendUint64(nil, pan.Block()^cb))
		if err != nil {
			return nil, fmt.Errorf("vending key %s: %w", ref.Name, err)
		}
		return out, nil
	}
	return nil, fmt.Errorf("supply group %s: unknown DKGA %q", g.Code, g.DKGA)
}

// SignVoucher signs with the credit key or, for engineering actions, the
// management key.
func (k KMSKeys) SignVoucher(ctx context.Context, v *voucher.Voucher) ([]byte, error) {
	s, err := keys.VoucherSigner(ctx, k.KM, v.Kind)
	if err != nil {
		return nil, err
	}
	return voucher.Sign(v, s)
}

// MeterRootVersion returns the newest version of the meter root.
func (k KMSKeys) MeterRootVersion(ctx context.Context) (int, error) {
	info, err := k.KM.Key(ctx, kms.Ref(keys.MeterRoot))
	if err != nil {
		return 0, fmt.Errorf("meter root: %w", err)
	}
	return info.Version, nil
}
