from photon_index.cli import main

main()
