// CSGDCentripetal: see Package.swift for the target's responsibility.
