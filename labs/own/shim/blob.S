/* blob.S: the shim library's bytes, built into socklab so one binary carries everything it needs. */
	.section .rodata
	.balign 16
	.globl own_shim_so
own_shim_so:
	.incbin SHIM_SO_PATH
	.globl own_shim_so_end
own_shim_so_end:
	.section .note.GNU-stack,"",@progbits
